"""Conformance driver for Delta Lake: real Delta tables written with ``deltalake`` (delta-rs).

Tables live under ``<tmp_path>/lake/prod/<name>`` and a source names them ``prod.<name>``.
Updates and deletes are delta-rs ``UPDATE``/``DELETE`` commits, so the change data feed
records them as a Databricks or Spark writer would. ``replace_table`` is a
``CREATE OR REPLACE TABLE`` (what a dbt full refresh does on Delta), ``expire_history``
runs ``VACUUM`` and log cleanup with zero retention, as an aggressive table
maintenance job would.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from tests.conformance.driver import Row, Schema

CDF = {"delta.enableChangeDataFeed": "true"}
ARROW_TYPES = {
    "string": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}
_NO_RETENTION = {
    "delta.logRetentionDuration": "interval 0 seconds",
    "delta.deletedFileRetentionDuration": "interval 0 seconds",
}
_DEFAULT_RETENTION = {
    "delta.logRetentionDuration": "interval 30 days",
    "delta.deletedFileRetentionDuration": "interval 1 week",
}


def sql_literal(value: Any) -> str:
    """A Python value as a DataFusion SQL literal (delta-rs evaluates update expressions)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, datetime):
        return "'" + value.astimezone(UTC).isoformat().replace("+00:00", "Z") + "'"
    return "'" + str(value).replace("'", "''") + "'"


def _column(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class DeltaDriver:
    kind = "delta"
    strategy = "cdc"
    #: a single-table SELECT with WHERE maps onto CDC rows; delta has no SQL engine to push to
    supports_query = True
    detects_replace = True
    can_expire = True

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.schemas: dict[str, pa.Schema] = {}

    def connection_config(self) -> dict[str, Any]:
        return {"path": str(self.root)}

    def table_name(self, name: str) -> str:
        return f"prod.{name}"

    def _path(self, name: str) -> str:
        return str(self.root / "prod" / name)

    def _table(self, name: str) -> DeltaTable:
        return DeltaTable(self._path(name))

    def _arrow(self, name: str, rows: list[Row]) -> pa.Table:
        return pa.Table.from_pylist(rows, schema=self.schemas[name])

    def create_table(
        self, name: str, schema: Schema, rows: list[Row], *, change_tracking: bool = True
    ) -> None:
        self.schemas[name] = pa.schema([(c, ARROW_TYPES[t]) for c, t in schema.items()])
        write_deltalake(
            self._path(name),
            self._arrow(name, rows),
            configuration=CDF if change_tracking else None,
        )

    def enable_change_tracking(self, name: str) -> None:
        self._table(name).alter.set_table_properties(CDF)

    def insert(self, name: str, rows: list[Row]) -> None:
        write_deltalake(self._path(name), self._arrow(name, rows), mode="append")

    def update(self, name: str, key: str, key_value: Any, values: Row) -> None:
        self._table(name).update(
            updates={_column(c): sql_literal(v) for c, v in values.items()},
            predicate=f"{_column(key)} = {sql_literal(key_value)}",
        )

    def delete(self, name: str, key: str, key_value: Any) -> None:
        self._table(name).delete(f"{_column(key)} = {sql_literal(key_value)}")

    def replace_table(self, name: str, schema: Schema, rows: list[Row]) -> None:
        # CREATE OR REPLACE gives the table a new id, as Databricks' dbt full refresh does
        self.schemas[name] = pa.schema([(c, ARROW_TYPES[t]) for c, t in schema.items()])
        DeltaTable.create(
            self._path(name), schema=self.schemas[name], mode="overwrite", configuration=CDF
        )
        if rows:
            self.insert(name, rows)

    def expire_history(self, name: str) -> None:
        """VACUUM the removed data files and clean the log up to a fresh checkpoint."""
        table = self._table(name)
        table.alter.set_table_properties(_NO_RETENTION)
        table = self._table(name)
        table.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
        table = self._table(name)
        table.create_checkpoint()
        table.cleanup_metadata()
        # later commits keep their history again, like a table back on its usual settings
        self._table(name).alter.set_table_properties(_DEFAULT_RETENTION)

    def rows(self, name: str) -> list[Row]:
        rows: list[Row] = self._table(name).to_pyarrow_table().to_pylist()
        return rows

    def close(self) -> None:
        return None


def make_driver(request: pytest.FixtureRequest, tmp_path: Path) -> DeltaDriver:
    return DeltaDriver(tmp_path / "lake")
