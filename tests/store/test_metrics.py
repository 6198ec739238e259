"""The figures ``/metrics`` reads, on every store backend: run totals per source and status,
duration buckets, the last success, and events per project."""

from __future__ import annotations

from datetime import timedelta

import pyarrow as pa

from profilesync.app import events as app_events
from profilesync.app import metrics
from profilesync.events import store as event_store
from profilesync.mapping import from_columns
from profilesync.model import Source, SyncResult, now
from profilesync.store.protocol import Store
from tests.store.conftest import PROPS, apply, net


def _failed(store: Store, seconds: float) -> None:
    finished = now()
    run = SyncResult(
        source="users",
        started_at=finished - timedelta(seconds=seconds),
        finished_at=finished,
        error="the warehouse did not answer",
        error_code="warehouse_unavailable",
    )
    store.record_failed_run(store.get_source("users"), run)


def test_run_totals_durations_and_last_success(store: Store) -> None:
    apply(store, net({"u-0001": ("a", 1.0), "u-0002": ("b", 2.0)}, rejected=[("short", {})]))
    apply(store, net({"u-0001": ("c", 1.0)}, deleted=["u-0002"]), position="2")
    _failed(store, 10)
    _failed(store, 7200)
    figures = metrics.figures(store, at=now() + timedelta(seconds=30))
    (users,) = figures.sources
    assert users.runs == {"success": 2, "failed": 2}
    assert users.rows == {"inserted": 2, "updated": 1, "deleted": 1, "rejected": 1}
    assert users.operations == 4
    # bounds 1, 5, 15, 60, 300, 900, 3600 s: the successes under 1 s, then 10 s, then 2 h
    assert users.within == [2, 2, 3, 3, 3, 3, 3] and users.timed == 4
    assert 7210 <= users.seconds < 7230
    assert users.seconds_since_last_success is not None
    assert 30 <= users.seconds_since_last_success < 60
    assert (figures.quota_used, figures.quota_limit) == (4, 300_000_000)


def test_a_source_added_again_starts_from_zero(store: Store) -> None:
    apply(store, net({"u-0001": ("a", 1.0)}))
    store.delete_source("users")
    store.add_source(Source("users", "lake", from_columns("prod.users", "uid", PROPS)))
    (users,) = metrics.figures(store).sources
    assert users.runs == {"success": 0, "failed": 0}
    assert users.seconds_since_last_success is None


def test_events_are_counted_per_project(store: Store) -> None:
    for name in ("web", "ios", "quiet"):
        event_store.create_project(store, name)
    for project, count in (("web", 3), ("ios", 1)):
        events = pa.table(
            {
                "event_type": ["View"] * count,
                "user_id": [f"user-{i:04d}" for i in range(count)],
                "time": [1_714_564_800_000 + i for i in range(count)],
            }
        )
        app_events.store_events(store, project, events)
    assert metrics.figures(store).events == {"web": 3, "ios": 1, "quiet": 0}
