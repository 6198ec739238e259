"""The scheduler on a real store and real Delta tables, with a clock the test moves."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from profilesync.errors import ConcurrentSyncError, WarehouseUnavailableError
from profilesync.server.scheduler import RetryPolicy, Scheduler
from profilesync.sources.delta import DeltaSource
from profilesync.store.duckdb import DuckDBStore
from profilesync.sync import engine
from tests.conftest import Warehouse, profiles, table_source, users_table
from tests.server.scheduling import (  # noqa: F401 (fixtures)
    HOUR,
    Clock,
    clock_fixture,
    scheduler_fixture,
    users_fixture,
)


def runs(store: DuckDBStore, name: str) -> list[dict[str, Any]]:
    return list(reversed(store.runs(name, limit=100)))


def test_frequency_is_honoured(
    scheduler: Callable[..., Scheduler],
    store: DuckDBStore,
    users: str,
    clock: Clock,
    warehouse: Warehouse,
) -> None:
    s = scheduler(clock)
    assert s.tick() == ["users"]  # never synced: runs at once
    assert s.tick() == []
    clock.advance(11 * HOUR)
    assert s.tick() == []
    warehouse.update("prod.users", "uid = 10001", {"title": "'CTO'"})
    clock.advance(HOUR)
    assert s.tick() == ["users"]
    assert [r["mode"] for r in runs(store, "users")] == ["initial", "incremental"]
    assert profiles(store)["10001"]["Title"] == "CTO"
    # a shorter frequency applies from the next check on
    store.update_source("users", frequency_seconds=1800)
    clock.advance(timedelta(minutes=29))
    assert s.tick() == []
    clock.advance(timedelta(minutes=1))
    assert s.tick() == ["users"]


def test_paused_sources_do_not_run(
    scheduler: Callable[..., Scheduler], store: DuckDBStore, users: str, clock: Clock
) -> None:
    s = scheduler(clock)
    store.update_source("users", paused=True)
    clock.advance(48 * HOUR)
    assert s.tick() == []
    assert s.status(store.get_source("users"))["state"] == "paused"
    s.resume("users")
    assert s.tick() == ["users"]


def test_missed_runs_catch_up_once_at_start(
    scheduler: Callable[..., Scheduler], store: DuckDBStore, users: str, clock: Clock
) -> None:
    engine.sync(store, "users")  # the last run before the server went down
    clock.advance(3 * 24 * HOUR)  # six runs were missed
    s = scheduler(clock)
    due = s.next_run(store.get_source("users"))
    assert due is not None and due < clock()
    assert s.tick() == ["users"]
    assert s.tick() == []
    assert len(runs(store, "users")) == 2
    assert s.next_run(store.get_source("users")) == clock() + 12 * HOUR


def test_missed_run_runs_when_the_server_starts(
    scheduler: Callable[..., Scheduler], tmp_path: Path, store: DuckDBStore, users: str
) -> None:
    """The real background thread: an overdue source syncs right after start."""
    engine.sync(store, "users")
    clock = Clock()
    clock.advance(13 * HOUR)
    s = scheduler(clock)
    s.start(tick_seconds=3600)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with s.lock:  # the worker uses this connection too
                if len(runs(store, "users")) == 2:
                    break
            time.sleep(0.05)
    finally:
        s.shutdown()
    assert [r["status"] for r in runs(store, "users")] == ["success", "success"]


def test_no_overlap(
    scheduler: Callable[..., Scheduler], store: DuckDBStore, users: str, clock: Clock
) -> None:
    started = threading.Event()
    release = threading.Event()

    def slow_sync(*args: Any, **kwargs: Any) -> Any:
        started.set()
        release.wait(10)
        return engine.sync(*args, **kwargs)

    s = scheduler(clock, sync=slow_sync)
    s.start(tick_seconds=None)
    try:
        s.sync_now("users")
        assert started.wait(10)
        with pytest.raises(ConcurrentSyncError):
            s.sync_now("users")
        with pytest.raises(ConcurrentSyncError):
            s.run("users")
        assert s.tick() == []  # due, but already running
        with s.lock:
            assert s.status(store.get_source("users"))["state"] == "running"
        release.set()
    finally:
        s.shutdown()
    assert len(runs(store, "users")) == 1


def test_another_process_syncing_is_skipped_not_failed(
    scheduler: Callable[..., Scheduler], store: DuckDBStore, users: str, clock: Clock
) -> None:
    s = scheduler(clock)
    with engine.source_lock(store, "users"):  # as a `profilesync sync users` elsewhere holds it
        assert s.run("users") is None
    assert runs(store, "users") == []
    assert s.status(store.get_source("users"))["retry"] is None
    assert s.tick() == ["users"]
    assert runs(store, "users")[0]["status"] == "success"


def test_retriable_failure_is_retried_with_backoff_then_recorded(
    scheduler: Callable[..., Scheduler],
    store: DuckDBStore,
    users: str,
    clock: Clock,
    warehouse: Warehouse,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = scheduler(clock, retry=RetryPolicy(attempts=2, first_seconds=60, factor=4))
    assert s.tick() == ["users"]
    calls: list[datetime] = []

    def unreachable(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(clock())
        raise WarehouseUnavailableError(
            "the warehouse did not answer (connection timed out): try again later"
        )

    monkeypatch.setattr(DeltaSource, "changes", unreachable)
    clock.advance(12 * HOUR)
    start = clock()
    assert s.tick() == ["users"]  # fails; retry 1 in 60 s
    assert s.status(store.get_source("users"))["state"] == "retrying"
    clock.advance(timedelta(seconds=59))
    assert s.tick() == []
    clock.advance(timedelta(seconds=1))
    assert s.tick() == ["users"]  # fails; retry 2 in 240 s
    clock.advance(timedelta(seconds=239))
    assert s.tick() == []
    clock.advance(timedelta(seconds=1))
    assert s.tick() == ["users"]  # fails; no retry left: recorded, back to the schedule
    assert [c - start for c in calls] == [
        timedelta(0),
        timedelta(seconds=60),
        timedelta(seconds=300),
    ]
    failed = [r for r in runs(store, "users") if r["status"] == "failed"]
    assert len(failed) == 3 and failed[-1]["error_code"] == "warehouse_unavailable"
    assert "did not answer" in failed[-1]["error"]
    status = s.status(store.get_source("users"))
    assert status["state"] == "active" and status["retry"] is None
    clock.advance(11 * HOUR)
    assert s.tick() == []
    monkeypatch.undo()
    warehouse.update("prod.users", "uid = 10002", {"title": "'CTO'"})
    clock.advance(HOUR)
    assert s.tick() == ["users"]
    assert runs(store, "users")[-1]["status"] == "success"
    assert profiles(store)["10002"]["Title"] == "CTO"


def test_needs_a_person_stops_the_source_until_resync(
    scheduler: Callable[..., Scheduler],
    store: DuckDBStore,
    users: str,
    clock: Clock,
    warehouse: Warehouse,
) -> None:
    s = scheduler(clock)
    assert s.tick() == ["users"]
    # dbt full refresh: the table is dropped and re-created
    shutil.rmtree(warehouse.path("prod.users"))
    warehouse.create("prod.users", users_table(3))
    clock.advance(12 * HOUR)
    assert s.tick() == ["users"]
    source = store.get_source("users")
    status = s.status(source)
    assert status["state"] == "stopped" and status["next_run"] is None
    assert status["stopped"]["code"] == "table_replaced"
    assert "--resync" in status["stopped"]["message"]
    for _ in range(3):
        clock.advance(24 * HOUR)
        assert s.tick() == []
    assert len(runs(store, "users")) == 2
    # the stop survives a restart of the server
    again = scheduler(clock)
    assert again.status(source)["state"] == "stopped" and again.tick() == []
    # a successful resync resolves it
    result = again.run("users", resync=True)
    assert result is not None and result.mode == "resync" and result.deleted == 2
    assert again.status(store.get_source("users"))["state"] == "active"
    clock.advance(12 * HOUR)
    assert again.tick() == ["users"]


def test_resume_lifts_a_stop(
    scheduler: Callable[..., Scheduler], store: DuckDBStore, users: str, clock: Clock
) -> None:
    s = scheduler(clock)
    store.set_setting("operations_limit", "3")
    assert s.tick() == ["users"]
    assert s.status(store.get_source("users"))["stopped"]["code"] == "quota_exceeded"
    clock.advance(24 * HOUR)
    assert s.tick() == []
    store.set_setting("operations_limit", None)
    s.resume("users")
    assert s.tick() == ["users"]
    assert runs(store, "users")[-1]["status"] == "success"


def test_a_new_source_runs_on_the_first_tick_with_the_real_clock(
    scheduler: Callable[..., Scheduler], store: DuckDBStore, users: str
) -> None:
    """The clock moves between reading "now" and asking when each source is due."""
    s = scheduler(lambda: datetime.now(UTC))
    assert s.tick() == ["users"]
    assert [r["status"] for r in runs(store, "users")] == ["success"]


def test_one_broken_source_does_not_stop_the_others(
    scheduler: Callable[..., Scheduler], store: DuckDBStore, warehouse: Warehouse, clock: Clock
) -> None:
    warehouse.create("prod.users", users_table(3))
    table_source(store, "a_broken", "prod.users", "uid", [("title", "Title")])
    table_source(store, "b_good", "prod.users", "uid", [("title", "Other Title")])

    def sync(target: DuckDBStore, name: str, **kwargs: Any) -> Any:
        if name == "a_broken":
            raise RuntimeError("a bug")
        return engine.sync(target, name, **kwargs)

    s = scheduler(clock, sync=sync)
    assert s.tick() == ["a_broken", "b_good"]
    assert [r["status"] for r in runs(store, "b_good")] == ["success"]
