"""Fixtures for the core suite: a small Delta Lake warehouse, a store file and the real CLI.

Everything is real: Delta tables written with ``deltalake`` under ``tmp_path``, a DuckDB
store file, and the ``profilesync`` entry point run as a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from profilesync.mapping import from_columns, from_query
from profilesync.model import Connection, Mapping, Source, parse_frequency
from profilesync.store import open_store
from profilesync.store.duckdb import DuckDBStore
from profilesync.sync import engine

CDF = {"delta.enableChangeDataFeed": "true"}


class Warehouse:
    """A directory of Delta tables; ``users`` is ``<root>/prod/users`` named ``prod.users``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, table: str) -> str:
        return str(self.root.joinpath(*table.split(".")))

    def create(
        self, table: str, data: pa.Table | dict[str, Any], *, cdf: bool = True, **config: str
    ) -> DeltaTable:
        """Write a new table (change data feed on unless ``cdf=False``)."""
        data = data if isinstance(data, pa.Table) else pa.table(data)
        configuration = {**(CDF if cdf else {}), **config}
        write_deltalake(self.path(table), data, configuration=configuration or None)
        return self.dt(table)

    def dt(self, table: str) -> DeltaTable:
        return DeltaTable(self.path(table))

    def append(self, table: str, data: pa.Table | dict[str, Any]) -> None:
        data = data if isinstance(data, pa.Table) else pa.table(data)
        write_deltalake(self.dt(table), data, mode="append")

    def update(self, table: str, predicate: str, updates: dict[str, str]) -> None:
        """``updates`` values are SQL expressions (quote strings: ``"'x'"``)."""
        self.dt(table).update(predicate=predicate, updates=updates)

    def delete(self, table: str, predicate: str) -> None:
        self.dt(table).delete(predicate)

    def rows(self, table: str) -> list[dict[str, Any]]:
        return self.dt(table).to_pyarrow_table().to_pylist()


def users_table(n: int = 5, start: int = 10_001) -> pa.Table:
    """``n`` users with integer ids, a title, a score and a flag."""
    ids = list(range(start, start + n))
    return pa.table(
        {
            "uid": pa.array(ids, pa.int64()),
            "title": [f"title-{i}" for i in ids],
            "score": pa.array([i / 100 for i in ids], pa.float64()),
            "active": [i % 2 == 0 for i in ids],
        }
    )


def add_source(
    store: DuckDBStore,
    name: str,
    mapping: Mapping,
    *,
    connection: str = "lake",
    strategy: str = "cdc",
) -> Source:
    """Save a source through the library (what ``source add`` does after its checks)."""
    return store.add_source(Source(name, connection, mapping, strategy=strategy))  # type: ignore[arg-type]


def resolve_and_add(
    store: DuckDBStore,
    name: str,
    connection: str,
    *,
    table: str | None = None,
    query: str | None = None,
    user_id: str | None = None,
    properties: list[tuple[str, str]] | None = None,
    strategy: str = "cdc",
    frequency: str = "12h",
) -> Source:
    """What ``source add --no-check`` does: resolve the mapping against the warehouse, save."""
    from profilesync.sources import open_source

    warehouse = open_source(store.get_connection(connection), name)
    try:
        mapping = engine.resolve_mapping(
            warehouse,
            table=table,
            query=query,
            user_id=user_id,
            properties=properties or [],
            strategy=strategy,
        )
    finally:
        warehouse.close()
    source = Source(
        name,
        connection,
        mapping,
        strategy=strategy,  # type: ignore[arg-type]
        frequency_seconds=parse_frequency(frequency),
    )
    return store.add_source(source)


def table_source(
    store: DuckDBStore, name: str, table: str, user_id: str, props: list[tuple[str, str]]
) -> Source:
    return add_source(store, name, from_columns(table, user_id, props))


def query_source(store: DuckDBStore, name: str, query: str) -> Source:
    return add_source(store, name, from_query(query, "databricks"))


def profiles(store: DuckDBStore) -> dict[str, dict[str, Any]]:
    """``user_id -> properties`` for every profile in the store."""
    return {p["user_id"]: p["properties"] for p in store.export_profiles()}


def usage_total(store: DuckDBStore) -> int:
    return int(store.usage()["used"])


def expected(
    rows: list[dict[str, Any]], user_id: str, props: list[tuple[str, str]]
) -> dict[str, dict[str, Any]]:
    """What the store must hold for ``rows`` of one table mapped by columns: non-null values."""
    return {
        str(row[user_id]): {name: row[col] for col, name in props if row[col] is not None}
        for row in rows
    }


def run_sync(store: DuckDBStore, name: str, *, resync: bool = False) -> dict[str, Any]:
    """One sync through the engine; the result as ``sync --json`` prints it."""
    return engine.sync(store, name, resync=resync).to_json()


@pytest.fixture
def warehouse(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "lake")


@pytest.fixture
def backend() -> str:
    """The backend of :func:`store`; a test module parametrises it to run on others too."""
    return "duckdb"


@pytest.fixture
def store(tmp_path: Path, warehouse: Warehouse, backend: str) -> Iterator[DuckDBStore]:
    """A store in ``tmp_path/home`` with a delta connection ``lake`` to ``warehouse``."""
    home = tmp_path / "home"
    # typed as the DuckDB store the helpers name: another backend answers the same protocol
    opened = (
        DuckDBStore(home)
        if backend == "duckdb"
        else cast(DuckDBStore, open_store(home, backend=backend))
    )
    with opened as s:
        s.add_connection(Connection("lake", "delta", {"path": str(warehouse.root)}))
        yield s


def entry_point() -> list[str]:
    """The installed ``profilesync`` console script, or the module when it is not installed."""
    script = Path(sys.executable).parent / "profilesync"
    return [str(script)] if script.exists() else [sys.executable, "-m", "profilesync.cli"]


class Cli:
    """Runs the real ``profilesync`` entry point in a subprocess against one home."""

    def __init__(self, home: Path, cwd: Path) -> None:
        self.home = home
        self.cwd = cwd

    def __call__(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        base = {k: v for k, v in os.environ.items() if k != "PROFILESYNC_FAULT"}
        full_env = {**base, "COLUMNS": "200", "NO_COLOR": "1", **(env or {})}
        return subprocess.run(
            [*entry_point(), "--home", str(self.home), *args],
            capture_output=True,
            text=True,
            env=full_env,
            cwd=self.cwd,
            timeout=timeout,
            check=False,
        )

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        proc = self(*args)
        assert proc.returncode == 0, f"{args} failed ({proc.returncode}):\n{proc.stderr}"
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json").stdout)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "home", tmp_path)
