"""``POST /api/query/funnel``, ``/api/query/retention`` and ``/api/cohorts`` on a served
home holding the funnel suite's profiles and events: the API answers what the
application layer answers on the same home, and refuses what it cannot run."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from profilesync.app import analyses
from profilesync.mapping import from_columns
from profilesync.model import Connection, Source
from profilesync.server.snapshot import _Snapshot
from profilesync.store import open_store
from tests.query.conftest import load
from tests.query.test_funnel import small_world
from tests.security.team import add_member
from tests.server.conftest import Served, serving
from tests.store.conftest import PROPS

RANGE = {"start": "2024-05-01", "end": "2024-05-07"}
MANAGERS = {
    "where": [{"kind": "profile", "name": "Title", "op": "is", "values": ["Manager"]}],
}
#: behaviour far enough back to see the suite's 2024 events
VIEWERS = {"behaviour": [{"event_type": "View", "days": 3660}]}


def make_home(home: Path) -> Path:
    """A duckdb home with the ``users`` source's profiles (Title, Score) and events."""
    with open_store(home, backend="duckdb") as opened:
        opened.add_connection(Connection("lake", "delta", {"path": "warehouse"}))
        opened.add_source(Source("users", "lake", from_columns("prod.users", "uid", PROPS)))
        load(opened, small_world())
    return home


def app_answer(home: Path, call: Any, *args: Any) -> Any:
    """What the application layer answers on ``home`` (the server is not running)."""
    with open_store(home) as opened:
        return call(opened, *args)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return make_home(tmp_path / "home")


@pytest.fixture
def served(home: Path) -> Iterator[Served]:
    with serving(home) as s:
        yield s


FUNNELS = [
    {"steps": ["View", "Cart", "Buy"], "window": "1h", **RANGE},
    {"steps": ["View", "Cart", "Buy"], "window": "1h", "order": "any",
     "group_by": {"kind": "profile", "name": "Title"}, **RANGE},
    {"steps": ["View", "Buy"], "window": "2h", "order": "strict",
     "group_by": {"kind": "user", "name": "plan"}, **RANGE},
]  # fmt: skip


def test_funnels_answer_as_the_application_does(home: Path) -> None:
    expected = [app_answer(home, analyses.funnel, analyses.FunnelQuery(**q)) for q in FUNNELS]
    with serving(home) as served:
        for query, want in zip(FUNNELS, expected, strict=True):
            got = served.api.post("/api/query/funnel", json=query)
            assert got.status_code == 200, got.text
            assert got.json() == want
    assert [s["users"] for s in expected[0]["steps"]] == [7, 6, 2]
    assert {g["label"] for g in expected[1]["groups"]} == {"Manager", "Engineer", "(none)"}


def test_retention_answers_as_the_application_does(home: Path) -> None:
    query = {"start_event": "View", "return_event": "Cart", "buckets": 2, "mode": "on_or_after",
             "group_by": {"kind": "profile", "name": "Title"}, **RANGE}  # fmt: skip
    want = app_answer(home, analyses.retention, analyses.RetentionQuery(**query))
    with serving(home) as served:
        got = served.api.post("/api/query/retention", json=query)
    assert got.status_code == 200, got.text
    assert got.json() == want
    assert want["cohorts"][0]["users"] == 7 and want["cohorts"][0]["returned"][0] == 6


@pytest.mark.parametrize(
    ("path", "body", "words"),
    [
        ("/api/query/funnel", {"steps": ["View"]}, ["body.steps", "at least 2"]),
        ("/api/query/funnel", {"steps": ["View", "Buy"], "window": "7 days"},
         ["body.window", "window '7 days' is not understood"]),
        ("/api/query/funnel", {"steps": ["View", "Buy"], "order": "sideways"}, ["body.order"]),
        ("/api/query/retention", {"start_event": "View"}, ["body.return_event", "required"]),
        ("/api/query/retention", {"start_event": "View", "return_event": "Buy", "buckets": 0},
         ["body.buckets"]),
        ("/api/cohorts", {"name": "empty"}, ["a cohort needs a condition"]),
        ("/api/cohorts", {"name": "x", "where": [{"kind": "event", "name": "path", "values": ["/"]}]},
         ["a cohort's conditions are profile properties"]),
    ],
)  # fmt: skip
def test_invalid_bodies_are_422_with_a_readable_message(
    served: Served, path: str, body: dict[str, Any], words: list[str]
) -> None:
    resp = served.api.post(path, json=body)
    assert resp.status_code == 422, resp.text
    assert resp.json()["code"] == "invalid_request"
    for word in words:
        assert word in resp.json()["message"]


def test_unknown_names_are_refused_in_words(served: Served) -> None:
    funnel = {"steps": ["View", "Buy"], **RANGE}
    cohort = served.api.post(
        "/api/query/funnel", json={**funnel, "where": [{"kind": "cohort", "name": "ghosts"}]}
    )
    assert cohort.status_code == 404
    assert (
        cohort.json()["code"] == "not_found"
        and "no cohort named 'ghosts'" in cohort.json()["message"]
    )
    group = served.api.post(
        "/api/query/funnel", json={**funnel, "group_by": {"kind": "profile", "name": "Plan"}}
    )
    assert group.status_code == 404
    assert group.json()["message"] == "no profile property named 'Plan'; known: Score, Title"
    for method, path in [
        ("GET", "/api/cohorts/ghosts"),
        ("PUT", "/api/cohorts/ghosts"),
        ("DELETE", "/api/cohorts/ghosts"),
        ("GET", "/api/cohorts/ghosts/export"),
    ]:
        resp = served.api.request(method, path, json=MANAGERS if method == "PUT" else None)
        assert resp.status_code == 404, f"{method} {path}: {resp.text}"
        assert resp.json()["code"] == "not_found", path
    bad = served.api.get("/api/cohorts/ghosts/export", params={"format": "xlsx"})
    assert bad.status_code == 422 and "format" in bad.json()["message"]


def test_a_cohort_is_added_shown_replaced_exported_and_deleted(served: Served) -> None:
    added = served.api.post("/api/cohorts", json={"name": "managers", **MANAGERS})
    assert added.status_code == 201, added.text
    assert added.json()["size"] == 3 and added.json()["definition"]["where"][0]["name"] == "Title"
    again = served.api.post("/api/cohorts", json={"name": "managers", **VIEWERS})
    assert again.status_code == 422 and "exists" in again.json()["message"]
    assert [c["name"] for c in served.api.get("/api/cohorts").json()] == ["managers"]

    shown = served.api.get("/api/cohorts/managers", params={"sample": 2}).json()
    assert (shown["size"], shown["sample"]) == (3, ["u3", "u4"])

    csv_export = served.api.get("/api/cohorts/managers/export", params={"format": "csv"})
    assert csv_export.headers["content-type"].startswith("text/csv")
    assert "attachment" in csv_export.headers["content-disposition"]
    assert csv_export.text == "user_id\nu3\nu4\nu6\n"
    jsonl = served.api.get("/api/cohorts/managers/export", params={"format": "jsonl"})
    assert [json.loads(line) for line in jsonl.text.splitlines()] == [
        {"user_id": "u3"}, {"user_id": "u4"}, {"user_id": "u6"},
    ]  # fmt: skip

    funnel = {"steps": ["View", "Buy"], "window": "2h", **RANGE}
    members = [{"kind": "cohort", "name": "managers"}]
    only = served.api.post("/api/query/funnel", json={**funnel, "where": members}).json()
    assert [s["users"] for s in only["steps"]] == [3, 2]  # u6 never bought

    replaced = served.api.put("/api/cohorts/managers", json=VIEWERS)
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["size"] == 6  # every user with a View: u1..u6, not the device
    assert served.api.get("/api/cohorts/managers/export").text.splitlines()[1:] == [
        "u1", "u2", "u3", "u4", "u5", "u6",
    ]  # fmt: skip

    assert served.api.delete("/api/cohorts/managers").json() == {"deleted": "managers"}
    assert served.api.get("/api/cohorts").json() == []


def test_the_api_needs_a_token(served: Served) -> None:
    with httpx.Client(base_url=served.url) as stranger:
        for method, path in [("POST", "/api/query/funnel"), ("GET", "/api/cohorts")]:
            resp = stranger.request(method, path, json={})
            assert resp.status_code == 401 and resp.json()["code"] == "unauthorized"


def test_a_viewer_runs_analyses_but_does_not_change_cohorts(served: Served) -> None:
    viewer = add_member(served, "vera", "viewer")
    try:
        funnel = viewer.api.post("/api/query/funnel", json={"steps": ["View", "Buy"], **RANGE})
        assert funnel.status_code == 200, funnel.text
        kept = viewer.api.post(
            "/api/query/retention", json={"start_event": "View", "return_event": "Cart", **RANGE}
        )
        assert kept.status_code == 200, kept.text
        refused = viewer.api.post("/api/cohorts", json={"name": "managers", **MANAGERS})
        assert refused.status_code == 403 and "vera is a viewer" in refused.json()["message"]
        page = viewer.ui.get("/cohorts")
        assert (
            page.status_code == 200 and '<form hidden method="post" action="/cohorts"' in page.text
        )
    finally:
        viewer.api.close()
        viewer.ui.close()


def test_an_analysis_reads_without_holding_the_store_lock(home: Path) -> None:
    """While the funnel's query runs, another request could take the store lock; the
    answer is the one the store gives directly."""
    lock = threading.RLock()
    free_while_reading: list[bool] = []

    def lock_is_free() -> bool:
        taken: list[bool] = []

        def try_it() -> None:
            taken.append(lock.acquire(blocking=False))
            if taken[0]:
                lock.release()

        other = threading.Thread(target=try_it)
        other.start()
        other.join()
        return taken[0]

    query = analyses.FunnelQuery(steps=["View", "Cart", "Buy"], window="1h", **RANGE)
    with open_store(home) as store, store.reader() as reader:

        class Watched:
            dialect = reader.dialect

            def read(self, sql: Any, params: Any = ()) -> Any:
                free_while_reading.append(lock_is_free())
                return reader.read(sql, params)

        answer = analyses.funnel(_Snapshot(store, lock, Watched()), query)  # type: ignore[arg-type]
        assert answer == analyses.funnel(store, query)
    assert free_while_reading == [True]
