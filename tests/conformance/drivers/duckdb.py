"""Conformance driver for a plain DuckDB file, synced by snapshot diff.

Tables live in ``<tmp_path>/warehouse.duckdb`` and a source names them ``main.<name>``.
Each change opens the file read-write, commits and closes it again, as a separate
writer job would: DuckDB lets one process write a file or many read it, so the sync's
read-only open must not find a writer holding it. A DuckDB file keeps no history:
``replace_table`` is a ``CREATE OR REPLACE TABLE`` that a diff follows without noticing,
and there is no change history to expire.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from tests.conformance.driver import Row, Schema

DUCKDB_TYPES = {
    "string": "VARCHAR",
    "int": "BIGINT",
    "float": "DOUBLE",
    "bool": "BOOLEAN",
    "timestamp": "TIMESTAMPTZ",
}
ARROW_TYPES = {
    "string": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}
OFFLINE = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class SqlDriver:
    """Shared by the DuckDB and DuckLake drivers: the same SQL against another catalog."""

    #: the catalog tables are created in (``main.<name>`` inside it)
    catalog = ""

    def __init__(self) -> None:
        self.schemas: dict[str, Schema] = {}

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        raise NotImplementedError

    def table_name(self, name: str) -> str:
        return f"main.{name}"

    def _table(self, name: str) -> str:
        prefix = f"{ident(self.catalog)}." if self.catalog else ""
        return f"{prefix}main.{ident(name)}"

    def _arrow(self, name: str, rows: list[Row]) -> pa.Table:
        schema = pa.schema([(c, ARROW_TYPES[t]) for c, t in self.schemas[name].items()])
        return pa.Table.from_pylist(rows, schema=schema)

    def _create(self, name: str, schema: Schema, rows: list[Row], replace: bool) -> None:
        self.schemas[name] = dict(schema)
        columns = ", ".join(f"{ident(c)} {DUCKDB_TYPES[t]}" for c, t in schema.items())
        verb = "CREATE OR REPLACE TABLE" if replace else "CREATE TABLE"
        data = self._arrow(name, rows)
        with self.connect() as con:
            con.execute("BEGIN")
            con.execute(f"{verb} {self._table(name)} ({columns})")
            if rows:
                con.register("incoming", data)
                con.execute(f"INSERT INTO {self._table(name)} SELECT * FROM incoming")
            con.execute("COMMIT")

    def create_table(
        self, name: str, schema: Schema, rows: list[Row], *, change_tracking: bool = True
    ) -> None:
        self._create(name, schema, rows, replace=False)

    def enable_change_tracking(self, name: str) -> None:
        return None

    def insert(self, name: str, rows: list[Row]) -> None:
        data = self._arrow(name, rows)
        with self.connect() as con:
            con.register("incoming", data)
            con.execute(f"INSERT INTO {self._table(name)} SELECT * FROM incoming")

    def update(self, name: str, key: str, key_value: Any, values: Row) -> None:
        sets = ", ".join(f"{ident(c)} = ?" for c in values)
        with self.connect() as con:
            con.execute(
                f"UPDATE {self._table(name)} SET {sets} WHERE {ident(key)} = ?",
                [*values.values(), key_value],
            )

    def delete(self, name: str, key: str, key_value: Any) -> None:
        with self.connect() as con:
            con.execute(f"DELETE FROM {self._table(name)} WHERE {ident(key)} = ?", [key_value])

    def replace_table(self, name: str, schema: Schema, rows: list[Row]) -> None:
        self._create(name, schema, rows, replace=True)

    def rows(self, name: str) -> list[Row]:
        with self.connect() as con:
            table = con.execute(f"SELECT * FROM {self._table(name)}").to_arrow_table()
        rows: list[Row] = table.to_pylist()
        return rows

    def close(self) -> None:
        return None


class DuckDBDriver(SqlDriver):
    kind = "duckdb"
    strategy = "diff"
    supports_query = True
    #: a diff re-reads the table, so a replaced table is simply diffed; nothing to detect
    detects_replace = False
    can_expire = False

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        duckdb.connect(str(path)).close()  # the file exists before `connection add` checks it

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        con = duckdb.connect(str(self.path), config=dict(OFFLINE))
        try:
            yield con
        finally:
            con.close()

    def connection_config(self) -> dict[str, Any]:
        return {"path": str(self.path)}

    def expire_history(self, name: str) -> None:
        raise NotImplementedError("a DuckDB file keeps no change history (can_expire is False)")


def make_driver(request: pytest.FixtureRequest, tmp_path: Path) -> DuckDBDriver:
    return DuckDBDriver(tmp_path / "warehouse.duckdb")
