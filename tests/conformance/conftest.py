"""The conformance suite's fixtures: one ``driver`` per warehouse kind and a ``harness``.

``driver`` is parametrised over every kind that runs here; each kind's driver lives in
``tests/conformance/drivers/<kind>.py``. ``harness`` wires a driver to a real store file
through the library calls the CLI makes (connection, mapping, source, sync) and computes
the profiles the warehouse rows imply, which is the oracle every scenario compares with.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from profilesync.model import Checkpoint, Connection, Source, SyncResult
from profilesync.store.duckdb import DuckDBStore
from profilesync.sync import engine
from profilesync.warehouses import open_warehouse
from tests.conformance.driver import Driver, Row
from tests.conftest import resolve_and_add

KINDS = ["delta", "postgres", "ducklake", "duckdb"]
#: kinds whose tests need a service the session starts
_MARKS = {"postgres": [pytest.mark.postgres]}
CONNECTION = "wh"

Profiles = dict[str, dict[str, Any]]
Props = list[tuple[str, str]]  # (column, property name)


def load_driver(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Driver:
    """Import ``tests.conformance.drivers.<kind>`` and build its driver."""
    module = importlib.import_module(f"tests.conformance.drivers.{kind}")
    directory = tmp_path / "warehouse"
    directory.mkdir(parents=True, exist_ok=True)
    driver: Driver = module.make_driver(request, directory)
    return driver


@pytest.fixture(params=[pytest.param(k, marks=_MARKS.get(k, []), id=k) for k in KINDS])
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Driver]:
    """A warehouse of one kind, empty, in ``tmp_path``."""
    built = load_driver(request.param, request, tmp_path)
    try:
        yield built
    finally:
        built.close()


def user_id_of(value: Any) -> str | None:
    """Semantics 1 in plain Python: integers -> decimal string, strings stay, length >= 5."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str) or len(value) < 5:
        return None
    return value


def json_of(value: Any) -> Any:
    """Semantics 7 in plain Python: timestamps are ISO 8601 UTC strings ending in ``Z``."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value


def expected_profiles(
    rows: list[Row],
    user_id: str,
    props: Props,
    where: Callable[[Row], bool] | None = None,
) -> Profiles:
    """The profiles one source over ``rows`` must give: valid users, their non-null values."""
    out: Profiles = {}
    for row in rows:
        uid = user_id_of(row[user_id])
        if uid is None or (where is not None and not where(row)):
            continue
        out[uid] = {name: json_of(row[col]) for col, name in props if row[col] is not None}
    return out


def net_changes(before: Profiles, after: Profiles) -> int:
    """Operations a sync from ``before`` to ``after`` must meter: users added, removed or changed."""
    return sum(1 for uid in before.keys() | after.keys() if before.get(uid) != after.get(uid))


class Harness:
    """A store in ``home`` with connection ``wh`` to the driver's warehouse, driven as the CLI does."""

    def __init__(self, driver: Driver, home: Path) -> None:
        self.driver = driver
        self.store = DuckDBStore(home)
        self.store.add_connection(Connection(CONNECTION, driver.kind, driver.connection_config()))

    def add_source(
        self, name: str, table: str, *, user_id: str | None = None, props: Props | None = None
    ) -> Source:
        """``source add NAME --table T --user-id C --property COL=Name ...``."""
        return self._add(name, table=self.driver.table_name(table), user_id=user_id, props=props)

    def add_query_source(self, name: str, query: str) -> Source:
        """``source add NAME --query 'SELECT ... AS "user_id" ...'``."""
        return self._add(name, query=query)

    def _add(
        self,
        name: str,
        *,
        table: str | None = None,
        query: str | None = None,
        user_id: str | None = None,
        props: Props | None = None,
    ) -> Source:
        return resolve_and_add(
            self.store,
            name,
            CONNECTION,
            table=table,
            query=query,
            user_id=user_id,
            properties=props,
            strategy=self.driver.strategy,
        )

    def sync(self, name: str, *, resync: bool = False) -> SyncResult:
        return engine.sync(self.store, name, resync=resync)

    def profiles(self) -> Profiles:
        return {p["user_id"]: p["properties"] for p in self.store.export_profiles()}

    def used(self) -> int:
        """Operations metered this month, as ``profilesync usage`` reports them."""
        return int(self.store.usage()["used"])

    def checkpoint(self, name: str) -> Checkpoint | None:
        return self.store.get_source(name).checkpoint

    def last_run(self, name: str) -> dict[str, Any]:
        return self.store.runs(name, limit=1)[0]

    def remove_source(self, name: str) -> None:
        """``source delete NAME``: frees warehouse-side state (a replication slot) too."""
        source = self.store.get_source(name)
        warehouse = open_warehouse(self.store.get_connection(CONNECTION), name)
        try:
            warehouse.release(source.mapping)
        finally:
            warehouse.close()
        self.store.delete_source(name)

    def close(self) -> None:
        for source in self.store.list_sources():
            self.remove_source(source.name)
        self.store.close()


@pytest.fixture
def harness(driver: Driver, tmp_path: Path) -> Iterator[Harness]:
    built = Harness(driver, tmp_path / "home")
    try:
        yield built
    finally:
        built.close()
