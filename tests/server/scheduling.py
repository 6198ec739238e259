"""What the scheduler's tests share: a clock the test moves, a Delta source to sync, and
schedulers built as ``serve`` builds them.

A test module imports the fixtures (``clock``, ``users``, ``scheduler``) by their
function names, so its parameters do not shadow the imports."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from profilesync.server.scheduler import Scheduler
from profilesync.store.duckdb import DuckDBStore
from tests.conftest import Warehouse, table_source, users_table

HOUR = timedelta(hours=1)


class Clock:
    """Starts at the real time (runs are stamped with it) and moves only when told."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture(name="clock")
def clock_fixture() -> Clock:
    return Clock()


@pytest.fixture(name="users")
def users_fixture(store: DuckDBStore, warehouse: Warehouse) -> str:
    """A source ``users`` on a Delta table of five users."""
    warehouse.create("prod.users", users_table(5))
    table_source(store, "users", "prod.users", "uid", [("title", "Title")])
    return "users"


@pytest.fixture(name="scheduler")
def scheduler_fixture(store: DuckDBStore) -> Iterator[Callable[..., Scheduler]]:
    """Builds schedulers as ``serve`` does: syncs on a second connection to the store."""
    opened: list[DuckDBStore] = []

    def make(clock: Clock, **kwargs: Any) -> Scheduler:
        opened.append(DuckDBStore(store.home))
        return Scheduler(store, threading.RLock(), clock=clock, sync_store=opened[-1], **kwargs)

    yield make
    for extra in opened:
        extra.close()
