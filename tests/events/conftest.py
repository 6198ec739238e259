"""A small fixed world for the events suite: profiles synced from a real Delta table, and events.

Profiles (after the second sync): ``user-0001`` pro/US, ``user-0002`` pro/US (was free
when it sent its events: upgraded in the warehouse afterwards), ``user-0003`` free/FR,
``user-0004`` enterprise/DE. ``user-0005`` has events but no profile. Every event
carries the ``plan`` the user had when it was sent, in ``user_properties``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest

from profilesync.events import ingest
from profilesync.events import store as event_store
from profilesync.store.duckdb import DuckDBStore
from tests.conftest import Warehouse, run_sync, table_source

PASSWORD = "correct-horse-battery"
PROPS = [("plan", "Plan"), ("country", "Country")]


def ms(day: int, hour: int = 12) -> int:
    """Milliseconds since the epoch of 2024-05-<day> <hour>:00 UTC."""
    return int(datetime(2024, 5, day, hour, tzinfo=UTC).timestamp() * 1000)


def event(
    kind: str, user: str | None, day: int, *, plan: str | None = None, **props: Any
) -> dict[str, Any]:
    doc: dict[str, Any] = {"event_type": kind, "time": ms(day)}
    if user:
        doc["user_id"] = user
    if plan:
        doc["user_properties"] = {"plan": plan}
    if props:
        doc["event_properties"] = props
    return doc


EVENTS = [
    event("Purchase", "user-0001", 1, plan="pro", amount=10),
    event("Purchase", "user-0002", 1, plan="free", amount=5),
    event("View", "user-0002", 1, plan="free", path="/pricing"),
    event("View", "user-0003", 1, plan="free", path="/docs"),
    event("View", "user-0001", 2, plan="pro", path="/pricing"),
    event("Purchase", "user-0002", 2, plan="free", amount=7),
    event("Purchase", "user-0003", 2, plan="free", amount=3),
    event("Purchase", "user-0004", 2, plan="enterprise", amount=100),
    event("Purchase", "user-0005", 2, amount=1),
    {"event_type": "View", "device_id": "dev-00001", "time": ms(3)},
    event("View", "user-0004", 3, plan="enterprise", path="/docs"),
]


def users(plans: list[str]) -> pa.Table:
    return pa.table(
        {
            "uid": ["user-0001", "user-0002", "user-0003", "user-0004"],
            "plan": plans,
            "country": ["US", "US", "FR", "DE"],
        }
    )


@dataclass
class World:
    store: DuckDBStore
    home: Path
    warehouse: Warehouse
    api_key: str


def build_world(tmp_path: Path) -> World:
    """Sync the users, send the events, then upgrade user-0002 and sync again."""
    lake = Warehouse(tmp_path / "lake")
    lake.create("prod.users", users(["pro", "free", "free", "enterprise"]))
    store = DuckDBStore(tmp_path / "home")
    from profilesync.model import Connection

    store.add_connection(Connection("lake", "delta", {"path": str(lake.root)}))
    table_source(store, "users", "prod.users", "uid", PROPS)
    run_sync(store, "users")
    _, key = event_store.create_project(store, "web")
    answer = ingest.ingest(store, json.dumps({"api_key": key, "events": EVENTS}).encode())
    assert answer["events_ingested"] == len(EVENTS)
    lake.update("prod.users", "uid = 'user-0002'", {"plan": "'pro'"})
    run_sync(store, "users")
    return World(store, tmp_path / "home", lake, key)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = build_world(tmp_path)
    try:
        yield w
    finally:
        w.store.close()


# -- a real server ------------------------------------------------------------------------


@dataclass
class Served:
    url: str
    app: Any
    api: httpx.Client  # admin token
    anon: httpx.Client  # no credentials (what an SDK sends)


@contextmanager
def serving(home: Path) -> Iterator[Served]:
    """The server suite's ``serving(home)`` (``serve`` includes the events routers), with
    a client that sends no credentials."""
    from tests.server.conftest import serving as serving_app

    with serving_app(home) as app, httpx.Client(base_url=app.url, timeout=60) as anon:
        yield Served(app.url, app.app, app.api, anon)
