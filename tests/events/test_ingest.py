"""``POST /2/httpapi`` on a real server: answers, limits, keys, durability and dedup."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from profilesync.events import ingest
from profilesync.events import projects as event_store
from profilesync.store import DuckDBStore
from tests.events.conftest import Served, ms, serving


@pytest.fixture
def project(tmp_path: Path) -> str:
    """A home with a project ``web``; returns its API key."""
    with DuckDBStore(tmp_path / "home") as store:
        _, key = event_store.create_project(store, "web")
    return key


@pytest.fixture
def served(tmp_path: Path, project: str) -> Iterator[Served]:
    with serving(tmp_path / "home") as s:
        yield s


def batch(key: str, n: int, *, prefix: str = "e", start: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "api_key": key,
        "events": [
            {
                "event_type": "View",
                "user_id": f"user-{i:05d}",
                "time": ms(1) + i,
                "insert_id": f"{prefix}-{i}",
                "event_properties": {"n": i},
                **extra,
            }
            for i in range(start, start + n)
        ],
    }


def stored(served: Served) -> list[tuple[Any, ...]]:
    with served.app.state.store_lock:
        return served.app.state.store.con.execute(
            "SELECT insert_id, count(*) FROM events GROUP BY 1 ORDER BY 1"
        ).fetchall()


def test_a_batch_is_acknowledged_with_the_usual_answer(served: Served, project: str) -> None:
    body = json.dumps(batch(project, 3)).encode()
    before = int(time.time() * 1000)
    resp = served.anon.post(
        "/2/httpapi", content=body, headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert answer["code"] == 200
    assert answer["events_ingested"] == 3
    assert answer["payload_size_bytes"] == len(body)
    assert before - 1000 <= answer["server_upload_time"] <= int(time.time() * 1000) + 1000
    assert [r[0] for r in stored(served)] == ["e-0", "e-1", "e-2"]
    with served.app.state.store_lock:
        row = served.app.state.store.con.execute(
            "SELECT user_id, \"time\", event_properties FROM events WHERE insert_id = 'e-1'"
        ).fetchone()
    assert row == ("user-00001", datetime(2024, 5, 1, 12, 0, 0, 1000), '{"n":1}')


def test_invalid_events_are_named_by_index_and_field(served: Served, project: str) -> None:
    events = [
        {"event_type": "View", "user_id": "user-00001"},  # fine: time defaults to upload time
        {"user_id": "user-00002"},  # missing event_type
        {"event_type": "View"},  # neither user_id nor device_id
        {"event_type": "View", "user_id": "abc"},  # id shorter than 5 characters
        {"event_type": "View", "device_id": "device-1", "time": "yesterday"},  # malformed time
        "not an event",
    ]
    resp = served.anon.post("/2/httpapi", json={"api_key": project, "events": events})
    assert resp.status_code == 400
    body = resp.json()
    assert body["code"] == 400
    assert body["events_with_missing_fields"] == {"event_type": [1], "user_id": [2]}
    assert body["events_with_invalid_id_lengths"] == {"user_id": [3]}
    assert body["events_with_invalid_fields"] == {"time": [4], "event": [5]}
    messages = {(p["index"], p["field"]): p["message"] for p in body["invalid_events"]}
    assert messages[(3, "user_id")] == "user_id is shorter than 5 characters"
    assert "milliseconds" in messages[(4, "time")]
    assert stored(served) == []  # a rejected batch stores nothing


def test_limits_answer_413(served: Served, project: str) -> None:
    resp = served.anon.post("/2/httpapi", json=batch(project, 2001))
    assert resp.status_code == 413
    assert "2,000 events" in resp.json()["error"]
    big = batch(project, 10, blob="x" * 110_000)
    resp = served.anon.post("/2/httpapi", json=big)
    assert resp.status_code == 413
    assert "1 MB" in resp.json()["error"]
    assert stored(served) == []
    assert served.anon.post("/2/httpapi", json=batch(project, 2000)).status_code == 200


def test_wrong_or_missing_api_key_is_refused(served: Served, project: str) -> None:
    resp = served.anon.post("/2/httpapi", json=batch("0" * 32, 1))
    assert resp.status_code == 400
    assert resp.json()["error"] == "Invalid API key: " + "0" * 32
    missing = batch(project, 1)
    del missing["api_key"]
    resp = served.anon.post("/2/httpapi", json=missing)
    assert resp.status_code == 400
    assert resp.json()["missing_field"] == "api_key"
    assert served.anon.post("/2/httpapi", content=b"{not json").status_code == 400
    assert stored(served) == []


def test_a_rotated_key_stops_working(served: Served, project: str) -> None:
    new = served.api.post("/api/projects/web/rotate-key").json()["api_key"]
    assert served.anon.post("/2/httpapi", json=batch(project, 1)).status_code == 400
    assert served.anon.post("/2/httpapi", json=batch(new, 1)).status_code == 200


def test_retried_batches_are_stored_once(served: Served, project: str) -> None:
    first = served.anon.post("/2/httpapi", json=batch(project, 100))
    retry = served.anon.post("/2/httpapi", json=batch(project, 100))
    overlap = served.anon.post("/2/httpapi", json=batch(project, 100, start=50))
    assert [r.status_code for r in (first, retry, overlap)] == [200, 200, 200]
    assert retry.json()["events_ingested"] == 100  # a retry is acknowledged like the first
    rows = stored(served)
    assert len(rows) == 150
    assert all(count == 1 for _, count in rows)


def test_duplicates_inside_one_batch_and_events_without_insert_id(
    served: Served, project: str
) -> None:
    doc = batch(project, 3)
    doc["events"].append(dict(doc["events"][0]))
    no_id = {"event_type": "Ping", "user_id": "user-00009"}
    doc["events"] += [no_id, no_id]
    assert served.anon.post("/2/httpapi", json=doc).json()["events_ingested"] == 6
    assert stored(served) == [("e-0", 1), ("e-1", 1), ("e-2", 1), (None, 2)]


def test_insert_ids_older_than_seven_days_are_new_again(tmp_path: Path, project: str) -> None:
    with DuckDBStore(tmp_path / "home") as store:
        web = event_store.get_project(store, "web")
        eight_days_ago = datetime.now(UTC) - timedelta(days=8)
        old = ingest.parse_batch(json.dumps(batch(project, 2)).encode())
        old.received_at = eight_days_ago
        ingest.store_batch(store, web.id, old)
        again = ingest.ingest(store, json.dumps(batch(project, 3)).encode())
        assert again["events_deduplicated"] == 0
        third = ingest.ingest(store, json.dumps(batch(project, 3)).encode())
        assert third["events_deduplicated"] == 3
        count = store.con.execute("SELECT count(*) FROM events").fetchone()
        assert count == (5,)


def test_the_same_project_in_two_stores_dedups_across_them(tmp_path: Path, project: str) -> None:
    """A second store object on the file sees the ids the first one committed."""
    body = json.dumps(batch(project, 5)).encode()
    with DuckDBStore(tmp_path / "home") as one:
        ingest.ingest(one, body)
        with DuckDBStore(tmp_path / "home") as two:
            assert ingest.ingest(two, body)["events_deduplicated"] == 5
        assert ingest.ingest(one, body)["events_deduplicated"] == 5
        assert one.con.execute("SELECT count(*) FROM events").fetchone() == (5,)


SERVER = """
import sys, uvicorn
from profilesync.server.app import create_app
app = create_app(sys.argv[1], tick_seconds=None)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


def start_server(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    from tests.server.conftest import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(home), str(port)])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("the server did not start")


def test_acknowledged_events_survive_a_killed_server_and_retries_after_restart(
    tmp_path: Path, project: str
) -> None:
    home = tmp_path / "home"
    proc, url = start_server(home)
    acknowledged = 0
    try:
        for i in range(5):
            resp = httpx.post(
                f"{url}/2/httpapi", json=batch(project, 200, start=i * 200), timeout=30
            )
            assert resp.status_code == 200
            acknowledged += resp.json()["events_ingested"]
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # no shutdown, no checkpoint
        proc.wait()
    proc, url = start_server(home)
    try:
        # the client did not hear back on its last batch and sends it again
        retry = httpx.post(f"{url}/2/httpapi", json=batch(project, 200, start=800), timeout=30)
        assert retry.json()["events_deduplicated"] == 200
    finally:
        proc.terminate()
        proc.wait()
    with DuckDBStore(home) as store:
        rows = store.con.execute(
            "SELECT count(*), count(DISTINCT insert_id) FROM events"
        ).fetchone()
    assert rows == (acknowledged, acknowledged) == (1000, 1000)


def test_browsers_on_other_sites_may_send_events(served: Served, project: str) -> None:
    pre = served.anon.options(
        "/2/httpapi",
        headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"},
    )
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == "*"
    sent = served.anon.post(
        "/2/httpapi", json=batch(project, 1), headers={"Origin": "https://shop.example"}
    )
    assert sent.status_code == 200 and sent.headers["access-control-allow-origin"] == "*"
    refused = served.anon.post("/2/httpapi", json=batch("0" * 32, 1))
    assert refused.headers["access-control-allow-origin"] == "*"


def test_project_and_batch_ids_stay_unique_across_reopens(tmp_path: Path) -> None:
    """A store closed without a checkpoint replays its log on open; ids taken from a
    sequence made in that same log must not restart (DuckDB's replay forgets the value)."""
    from profilesync.events import dedup

    home = tmp_path / "fresh"
    for i in range(3):
        with DuckDBStore(home) as store:
            _, key = event_store.create_project(store, f"p{i}")
            doc = {
                "api_key": key,
                "events": [{"event_type": "View", "user_id": "user-00001", "insert_id": f"i-{i}"}],
            }
            assert ingest.ingest(store, json.dumps(doc).encode())["events_ingested"] == 1
        dedup._indexes.clear()  # as a new process
    with DuckDBStore(home) as store:
        ids = store.con.execute("SELECT id FROM projects ORDER BY id").fetchall()
        batches = store.con.execute("SELECT project_id, batch_id FROM events ORDER BY 2").fetchall()
    assert ids == [(1,), (2,), (3,)]
    assert len({b for _, b in batches}) == 3
