"""Fixtures for the DuckLake and DuckDB source tests: real lakes and database files in tmp_path.

``lake`` is a DuckLake with a DuckDB catalog file and Parquet data files, written through
the ducklake extension from the installed wheel; ``wh`` is a plain DuckDB database file.
Both write through short-lived read-write connections, so profilesync's read-only opens
never meet a writer.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from profilesync.model import Connection, Source
from profilesync.store.duckdb import DuckDBStore
from tests.conformance.drivers.duckdb import DuckDBDriver
from tests.conformance.drivers.ducklake import DuckLakeDriver
from tests.conftest import resolve_and_add

USERS = {"uid": "string", "plan": "string", "seats": "int", "score": "float"}


def user(
    uid: str, plan: str | None = "pro", seats: int | None = 1, score: float | None = 0.5
) -> dict[str, Any]:
    return {"uid": uid, "plan": plan, "seats": seats, "score": score}


class Lake(DuckLakeDriver):
    """A DuckLake with SQL access for the changes a test makes."""

    def sql(self, *statements: str) -> list[tuple[Any, ...]]:
        """Run statements in one transaction (one snapshot); the last one's rows."""
        with self.connect() as con:
            con.execute("USE lake")
            con.execute("BEGIN")
            rows: list[tuple[Any, ...]] = []
            for statement in statements:
                rows = con.execute(statement).fetchall()
            con.execute("COMMIT")
            return rows

    def snapshot_id(self) -> int:
        return int(self.sql("SELECT id FROM lake.current_snapshot()")[0][0])

    def table_uuid(self, table: str = "users") -> str:
        rows = self.sql(
            f"SELECT table_uuid FROM ducklake_table_info('lake') WHERE table_name = '{table}'"
        )
        return str(rows[0][0])


class Warehouse(DuckDBDriver):
    """A DuckDB file with SQL access for the changes a test makes."""

    def sql(self, *statements: str) -> list[tuple[Any, ...]]:
        with self.connect() as con:
            rows: list[tuple[Any, ...]] = []
            for statement in statements:
                rows = con.execute(statement).fetchall()
            return rows


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(tmp_path / "lake")


@pytest.fixture
def wh(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "warehouse.duckdb")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckDBStore]:
    with DuckDBStore(tmp_path / "home") as s:
        yield s


def connect(store: DuckDBStore, driver: Lake | Warehouse) -> None:
    """``connection add wh --kind KIND ...`` through the library."""
    store.add_connection(Connection("wh", driver.kind, driver.connection_config()))


def add_source(
    store: DuckDBStore,
    name: str,
    *,
    table: str | None = None,
    query: str | None = None,
    props: list[tuple[str, str]] | None = None,
    strategy: str = "cdc",
) -> Source:
    """``source add`` through the library: the mapping resolved against the warehouse."""
    return resolve_and_add(
        store,
        name,
        "wh",
        table=table,
        query=query,
        user_id="uid" if table else None,
        properties=props if props is not None else [("plan", "plan"), ("seats", "seats")],
        strategy=strategy,
    )


@contextmanager
def writer_process(opens: str) -> Iterator[subprocess.Popen[str]]:
    """Another Python process that runs ``opens`` (DuckDB code holding a file for writing)
    and keeps it open until the block ends."""
    ready = "print('ready', flush=True)\nsys.stdin.read()\n"
    script = f"import sys, duckdb\n{textwrap.dedent(opens)}\n{ready}"
    writer = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
        yield writer
    finally:
        writer.communicate("")


def profiles(store: DuckDBStore) -> dict[str, dict[str, Any]]:
    return {p["user_id"]: p["properties"] for p in store.export_profiles()}
