"""The 429 Amplitude answers when a device or user sends too fast, over a real server.

The limits are put in small (``app.state.throttle``) so a test sends tens of events, not
thousands; the clock is a number the test moves.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from profilesync.app.events import Rule, Throttle, ThrottledError
from profilesync.events import projects
from profilesync.events.throttle import RULES
from profilesync.store import DuckDBStore
from tests.events.conftest import Served, ms, serving


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def key(tmp_path: Path) -> str:
    with DuckDBStore(tmp_path / "home") as store:
        _, api_key = projects.create_project(store, "web")
    return api_key


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def served(tmp_path: Path, key: str, clock: Clock) -> Iterator[Served]:
    rules = {
        "httpapi": (Rule(10, 30),),
        "batch": (Rule(100, 30), Rule(150, 86_400, 3_600)),
    }
    with serving(tmp_path / "home") as s:
        s.app.state.throttle = Throttle(rules, clock)
        yield s


def ev(i: int, device: str | None = None, user: str | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"event_type": "View", "time": ms(1) + i, "insert_id": f"e-{i}"}
    if device:
        doc["device_id"] = device
    if user:
        doc["user_id"] = user
    return doc


def stored(served: Served) -> list[tuple[Any, ...]]:
    with served.app.state.store_lock:
        sql = "SELECT coalesce(device_id, user_id), count(*) FROM events GROUP BY 1 ORDER BY 1"
        return served.app.state.store.con.execute(sql).fetchall()


def post(served: Served, path: str, key: str, events: list[dict[str, Any]]) -> Any:
    return served.anon.post(path, json={"api_key": key, "events": events})


def test_a_device_over_the_limit_gets_amplitudes_429_and_nothing_is_stored(
    served: Served, key: str, clock: Clock
) -> None:
    first = post(served, "/2/httpapi", key, [ev(i, "phone-0001") for i in range(6)])
    assert first.status_code == 200, first.text
    # 6 more from the phone (12 > 10 in 30 s) among 3 from a laptop
    mixed = [ev(10 + i, "phone-0001" if i % 3 else "laptop-001") for i in range(9)]
    resp = post(served, "/2/httpapi", key, mixed)
    assert resp.status_code == 429
    assert resp.headers["retry-after"] == "30"
    assert resp.headers["access-control-allow-origin"] == "*"
    body = resp.json()
    assert body["code"] == 429
    assert body["error"] == "Too many requests for some devices and users"
    assert body["eps_threshold"] == pytest.approx(10 / 30)
    assert body["throttled_devices"] == {"phone-0001": pytest.approx(12 / 30, abs=0.01)}
    assert body["throttled_users"] == {}
    assert body["throttled_events"] == [1, 2, 4, 5, 7, 8]
    # nothing of the refused request, the laptop's events included
    assert stored(served) == [("phone-0001", 6)]
    # other devices are let in, and so is the phone within its limit
    ok = post(served, "/2/httpapi", key, [ev(20, "laptop-001"), ev(21, "tablet-01")])
    assert ok.status_code == 200, ok.text
    assert post(served, "/2/httpapi", key, [ev(22 + i, "phone-0001") for i in range(4)]).is_success
    assert post(served, "/2/httpapi", key, [ev(30, "phone-0001")]).status_code == 429
    # the window slides: 30 s later the phone may send again
    clock.now += 31
    assert post(served, "/2/httpapi", key, [ev(40, "phone-0001")]).status_code == 200
    assert stored(served) == [("laptop-001", 1), ("phone-0001", 11), ("tablet-01", 1)]


def test_users_are_throttled_by_user_id(served: Served, key: str) -> None:
    events = [ev(i, device=f"device-{i:03d}", user="user-00001") for i in range(11)]
    resp = post(served, "/2/httpapi", key, [*events, ev(99, user="user-00002")])
    assert resp.status_code == 429
    body = resp.json()
    assert body["throttled_users"] == {"user-00001": pytest.approx(11 / 30, abs=0.01)}
    assert body["throttled_devices"] == {}
    assert body["throttled_events"] == list(range(11))
    assert stored(served) == []


def test_a_refused_request_does_not_count(served: Served, key: str) -> None:
    """A client that backs off is let in: its refused events are not counted against it."""
    for _ in range(3):
        resp = post(served, "/2/httpapi", key, [ev(i, "phone-0001") for i in range(11)])
        assert resp.status_code == 429
    assert post(served, "/2/httpapi", key, [ev(i, "phone-0001") for i in range(10)]).is_success


def test_batch_has_a_higher_limit_and_a_daily_one(served: Served, key: str, clock: Clock) -> None:
    fifty = [ev(i, "phone-0001") for i in range(50)]
    assert post(served, "/2/httpapi", key, fifty).status_code == 429
    assert post(served, "/batch", key, fifty).status_code == 200
    assert post(served, "/batch", key, [ev(50 + i, "phone-0001") for i in range(50)]).is_success
    over = post(served, "/batch", key, [ev(100, "phone-0001")])
    assert over.status_code == 429 and over.json()["eps_threshold"] == pytest.approx(100 / 30)
    clock.now += 31  # the 30 s window is empty again, the day holds 100
    assert post(served, "/batch", key, [ev(200 + i, "phone-0001") for i in range(40)]).is_success
    clock.now += 31
    daily = post(served, "/batch", key, [ev(300 + i, "phone-0001") for i in range(20)])
    assert daily.status_code == 429
    assert daily.json()["eps_threshold"] == pytest.approx(150 / 86_400)
    assert daily.headers["retry-after"] == "3600"
    assert stored(served) == [("phone-0001", 140)]
    clock.now += 86_400  # a day later
    assert post(served, "/batch", key, [ev(400 + i, "phone-0001") for i in range(20)]).is_success


def test_the_default_limits_are_amplitudes(tmp_path: Path, key: str) -> None:
    assert RULES["httpapi"][0].eps == 30 and RULES["httpapi"][0].seconds == 30
    assert RULES["batch"][0].eps == 1_000
    assert RULES["batch"][1].events == 500_000 and RULES["batch"][1].seconds == 86_400
    with serving(tmp_path / "home") as s:  # one device, 2,000 events: over 30/s for 30 s
        resp = post(s, "/2/httpapi", key, [ev(i, "phone-0001") for i in range(2_000)])
        assert resp.status_code == 429
        assert resp.json()["eps_threshold"] == 30
        assert len(resp.json()["throttled_events"]) == 2_000
        assert post(s, "/batch", key, [ev(i, "phone-0001") for i in range(2_000)]).is_success


def test_release_takes_back_a_request_that_was_not_stored() -> None:
    throttle = Throttle({"httpapi": (Rule(10, 30),)}, Clock())
    events = pa.table({"device_id": ["phone-0001"] * 8, "user_id": pa.nulls(8, pa.string())})
    admitted = throttle.admit("httpapi", "k", events)
    with pytest.raises(ThrottledError):
        throttle.admit("httpapi", "k", events)
    throttle.admit("httpapi", "other-key", events)  # counted per API key
    throttle.release(admitted)
    throttle.admit("httpapi", "k", events)
    assert throttle.admit("identify", "k", events.slice(0, 0)).added == []
