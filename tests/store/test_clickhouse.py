"""What the ClickHouse store adds to the conformance suite: a sync's rows become visible
with its catalog commit even when the process dies between the two steps, events of a
batch that never committed disappear, and a home keeps the backend it was made with."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlglot import exp

from profilesync.errors import ConfigurationError
from profilesync.events import dedup, ingest, userprops
from profilesync.events.fields import SPEC, STANDARD_FIELDS
from profilesync.events.projects import create_project
from profilesync.events.validate import scratch
from profilesync.mapping import from_columns
from profilesync.model import Connection, Source
from profilesync.query import SegmentationQuery, segmentation
from profilesync.store import open_store
from profilesync.store.clickhouse import ClickHouseStore
from profilesync.store.duckdb import DuckDBStore
from profilesync.store.protocol import Store
from tests.events.conftest import ms
from tests.store.conftest import PROPS, apply, net, profiles
from tests.store.test_events import DAY, append, events, view

pytest.importorskip("chdb", reason="needs the clickhouse extra: pip install .[clickhouse]")

ROOT = Path(__file__).resolve().parents[2]
COUNT_EVENTS = exp.select("count(*)").from_("events")

# a sync in another process, killed (SIGKILL) at a fault point
_KILLED_SYNC = """
import os, sys
from profilesync.store import open_store
from tests.store.conftest import apply, net
os.environ["PROFILESYNC_FAULT"] = sys.argv[2]
store = open_store(sys.argv[1], backend="chdb")
apply(store, net({"u-0001": ("A", 1.0), "u-0003": ("c", 3.0)}, deleted=["u-0002"]), position="2")
"""


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(tmp_path / "home", backend="chdb")
    opened.add_connection(Connection("lake", "delta", {"path": "warehouse"}))
    opened.add_source(Source("users", "lake", from_columns("prod.users", "uid", PROPS)))
    yield opened
    opened.close()  # a test may have closed it already


def observed(store: Store) -> tuple[object, ...]:
    checkpoint = store.get_source("users").checkpoint
    return (
        profiles(store),
        checkpoint.position if checkpoint else None,
        store.usage()["used"],
        [r["status"] for r in store.runs("users")],
    )


@pytest.mark.parametrize("point", ["mid_apply", "before_commit"])
def test_a_sync_killed_before_its_commit_leaves_nothing_visible(
    store: Store, tmp_path: Path, point: str
) -> None:
    apply(store, net({"u-0001": ("a", 1.0), "u-0002": ("b", 2.0)}))
    before = observed(store)
    store.close()
    killed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_KILLED_SYNC), str(tmp_path / "home"), point],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -9, killed.stderr
    with open_store(tmp_path / "home", backend="chdb") as reopened:
        assert observed(reopened) == before
        # the window applies again, metered once
        again = apply(
            reopened,
            net({"u-0001": ("A", 1.0), "u-0003": ("c", 3.0)}, deleted=["u-0002"]),
            position="2",
        )
        assert (again.inserted, again.updated, again.deleted) == (1, 1, 1)
        assert profiles(reopened) == {
            "u-0001": {"Title": "A", "Score": 1.0},
            "u-0003": {"Title": "c", "Score": 3.0},
        }
        assert reopened.usage()["used"] == 2 + 3


def test_rows_committed_before_a_crash_are_attached_when_the_store_opens(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply(store, net({"u-0001": ("a", 1.0)}))
    settle = ClickHouseStore.settle
    # the process dies right after the catalog commit: the pending rows stay pending
    monkeypatch.setattr(ClickHouseStore, "settle", lambda self, source, present=None: None)
    apply(store, net({"u-0001": ("A", 1.0), "u-0002": ("b", 2.0)}), position="2")
    assert profiles(store) == {"u-0001": {"Title": "a", "Score": 1.0}}
    store.close()
    monkeypatch.setattr(ClickHouseStore, "settle", settle)
    with open_store(tmp_path / "home", backend="chdb") as reopened:
        assert reopened.get_source("users").checkpoint.position == "2"  # type: ignore[union-attr]
        assert profiles(reopened) == {
            "u-0001": {"Title": "A", "Score": 1.0},
            "u-0002": {"Title": "b", "Score": 2.0},
        }
        assert reopened.usage()["used"] == 3


def test_events_of_a_batch_that_never_committed_are_gone_after_a_restart(
    store: Store, tmp_path: Path
) -> None:
    project, _ = create_project(store, "web")
    writer = ingest.Writer(store, project.id, now=DAY).__enter__()
    writer.append(ingest.prepare(scratch(), events([view("u-0001", "x"), view("u-0002", "y")])))
    writer.index.lock.release()
    store.close()  # the process dies: the catalog never saw the batch commit
    dedup._indexes.clear()
    with open_store(tmp_path / "home", backend="chdb") as reopened:
        assert reopened.read(COUNT_EVENTS) == [(0,)]
        # the ids were never stored: they are not duplicates now
        assert append(reopened, project.id, [view("u-0001", "x")]).stored == 1
        assert reopened.read(COUNT_EVENTS) == [(1,)]


def test_a_home_keeps_the_backend_it_was_made_with(store: Store, tmp_path: Path) -> None:
    apply(store, net({"u-0001": ("a", 1.0)}))
    store.close()
    with open_store(tmp_path / "home") as reopened:  # no backend named: the recorded one
        assert reopened.capabilities.dialect == "clickhouse"
        assert profiles(reopened) == {"u-0001": {"Title": "a", "Score": 1.0}}
    with pytest.raises(ConfigurationError, match="created with --store chdb, not duckdb"):
        open_store(tmp_path / "home", backend="duckdb")
    # the DuckDB store opened directly would show an empty store where the profiles are
    with pytest.raises(ConfigurationError, match="created with --store chdb"):
        DuckDBStore(tmp_path / "home")
    with open_store(tmp_path / "duck") as duck:
        duck.add_connection(Connection("lake", "delta", {"path": "warehouse"}))
    with pytest.raises(ConfigurationError, match="created with --store duckdb, not chdb"):
        open_store(tmp_path / "duck", backend="chdb")


def test_a_duckdb_home_with_only_events_is_not_taken_by_chdb(tmp_path: Path) -> None:
    with DuckDBStore(tmp_path / "home") as duck:  # made before homes recorded their backend
        project, _ = create_project(duck, "web")
        append(duck, project.id, [view("u-0001", "a")])
    with pytest.raises(ConfigurationError, match="created with --store duckdb, not chdb"):
        open_store(tmp_path / "home", backend="chdb")
    with open_store(tmp_path / "home") as reopened:
        assert reopened.read(COUNT_EVENTS) == [(1,)]


def test_chdb_runs_one_data_directory_per_process(store: Store, tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    with pytest.raises(ConfigurationError, match="one data directory per process"):
        open_store(tmp_path / "other", backend="chdb")
    store.close()
    with open_store(tmp_path / "other", backend="chdb") as other:
        assert other.list_sources() == []


# -- every event field, user properties, an events table of an older version ----------------


def post(store: Store, key: str, *events: dict[str, Any]) -> None:
    answer = ingest.ingest(store, json.dumps({"api_key": key, "events": list(events)}).encode())
    assert answer["code"] == 200, answer


def test_every_documented_field_is_stored_and_queryable(store: Store) -> None:
    from tests.server.test_httpapi_compat import EVERY_FIELD

    _, key = create_project(store, "web")
    post(store, key, EVERY_FIELD)
    names = [f.name for f in SPEC]
    row = store.read(exp.select(*(exp.column(n, quoted=True) for n in names)).from_("events"))
    stored = dict(zip(names, row[0], strict=True))
    for f in SPEC:
        want = EVERY_FIELD[f.key] if f.name != "revenue" else 4.99 * 3  # price * quantity
        value = json.loads(stored[f.name]) if f.kind == "object" else stored[f.name]
        if f.name == "time":
            assert value == datetime(2024, 5, 1, 12)
        else:
            assert value == (pytest.approx(want) if f.kind == "double" else want), f.name
    for name in STANDARD_FIELDS:  # each can be queried as field:<name>
        query = SegmentationQuery(
            events=["Purchase"], start="2024-05-01", end="2024-05-01",
            filters=[{"kind": "field", "name": name, "op": "is set"}],  # type: ignore[list-item]
        )  # fmt: skip
        assert segmentation(store, query)["series"][0]["values"] == [1], name


def test_user_properties_survive_a_restart(store: Store, tmp_path: Path) -> None:
    _, key = create_project(store, "web")
    identify = {"event_type": "$identify", "user_id": "user-00001", "time": ms(1)}
    post(store, key, {**identify, "user_properties": {"$set": {"plan": "pro"}, "$add": {"n": 1}}})
    store.close()
    dedup._indexes.clear()  # what a new process starts with
    userprops._states.clear()
    with open_store(tmp_path / "home") as reopened:
        view = {"event_type": "View", "user_id": "user-00001", "time": ms(1)}
        post(reopened, key, {**identify, "user_properties": {"$add": {"n": 1}}}, view)
        query = SegmentationQuery(
            events=["View"], start="2024-05-01", end="2024-05-01",
            filters=[{"kind": "user", "name": "plan", "op": "is", "values": ["pro"]}],  # type: ignore[list-item]
        )  # fmt: skip
        assert segmentation(reopened, query)["series"][0]["values"] == [1]
        props = exp.select("user_properties").from_("events").where("event_type = 'View'")
        assert json.loads(reopened.read(props)[0][0]) == {"plan": "pro", "n": 2}


def test_an_events_table_of_an_older_version_gains_the_new_fields(
    store: Store, tmp_path: Path
) -> None:
    assert isinstance(store, ClickHouseStore)
    store.driver.execute("ALTER TABLE events DROP COLUMN os_version")
    store.driver.execute("ALTER TABLE events DROP COLUMN ingestion_metadata")
    store.close()
    with open_store(tmp_path / "home") as reopened:
        _, key = create_project(reopened, "web")
        event = {"event_type": "View", "user_id": "user-00001", "time": ms(1)}
        post(reopened, key, {**event, "os_version": "17.1", "ingestion_metadata": {"a": 1}})
        stored = reopened.read(exp.select("os_version", "ingestion_metadata").from_("events"))
        assert stored == [("17.1", '{"a":1}')]
