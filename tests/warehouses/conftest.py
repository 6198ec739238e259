"""Fixtures for the Snowflake and Databricks sources: a stand-in warehouse in the place of
the connector module (``snowflake.connector`` / ``databricks.sql``), so the source's own
``connect`` runs, and a real store file in ``tmp_path``.

The stand-ins (``fakes.py``) exist only because neither service can be reached from the
machines these tests run on; everything after the connector (the sync engine, the
vectorised transform, the DuckDB store) is the real code.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from profilesync.model import Connection
from profilesync.store.duckdb import DuckDBStore
from profilesync.sync import engine
from profilesync.warehouses import validate_config
from tests.conftest import resolve_and_add
from tests.warehouses.fakes import FakeDatabricks, FakeService, FakeSnowflake, connector_modules

SNOWFLAKE_CONFIG = {
    "account": "xy12345.eu-central-1",
    "user": "PROFILESYNC",
    "password": "not-a-real-password",
    "warehouse": "SYNC_WH",
    "role": "PROFILESYNC_READER",
    "database": "analytics",
}
DATABRICKS_CONFIG = {
    "server_hostname": "https://dbc-1234abcd-5678.cloud.databricks.com/",
    "http_path": "/sql/1.0/warehouses/abc123def456",
    "access_token": "dapi-not-a-real-token",
    "catalog": "main",
    "schema": "crm",
}


Fake = TypeVar("Fake", bound=FakeService)


def _every_statement_parses(service: FakeService) -> None:
    # the stand-in parses each statement when it answers; this repeats it over the whole
    # log so a test fails even where a statement's error was caught on the way
    assert service.parsed(service.dialect)


def _install(monkeypatch: pytest.MonkeyPatch, service: FakeService) -> None:
    """The stand-in takes the connector's place: the source's own ``connect`` runs."""
    for name, module in connector_modules(service).items():
        monkeypatch.setitem(sys.modules, name, module)


def _standing_in(monkeypatch: pytest.MonkeyPatch, fake: Fake) -> Iterator[Fake]:
    """The stand-in for one test, which then checks what the sources sent and that they
    closed their connections."""
    _install(monkeypatch, fake)
    yield fake
    if fake.statements:
        _every_statement_parses(fake)
    assert all(c.closed for c in fake.connections), "a source left its connection open"


@pytest.fixture
def snowflake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSnowflake]:
    yield from _standing_in(monkeypatch, FakeSnowflake())


@pytest.fixture
def databricks(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDatabricks]:
    yield from _standing_in(monkeypatch, FakeDatabricks())


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckDBStore]:
    """A store with a ``sf`` (snowflake) and a ``dbx`` (databricks) connection."""
    with DuckDBStore(tmp_path / "home") as s:
        s.add_connection(
            Connection("sf", "snowflake", validate_config("snowflake", dict(SNOWFLAKE_CONFIG)))
        )
        s.add_connection(
            Connection("dbx", "databricks", validate_config("databricks", dict(DATABRICKS_CONFIG)))
        )
        yield s


#: ``source add --no-check``: the mapping resolved against the stand-in, then saved
add_source = resolve_and_add


def run_sync(store: DuckDBStore, name: str, *, resync: bool = False) -> dict[str, Any]:
    return engine.sync(store, name, resync=resync).to_json()


def profiles(store: DuckDBStore) -> dict[str, dict[str, Any]]:
    return {p["user_id"]: p["properties"] for p in store.export_profiles()}


def checks_by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in report["checks"]}
