"""Delta Lake tables on a file system, read with delta-rs (``deltalake``).

A connection is a directory; every sub-directory holding a ``_delta_log`` is a table,
named by its relative path with ``/`` written as ``.``. Snapshots read one table
version; changes come from the change data feed (``load_cdf``) after the checkpoint's
version. Drop-and-replace shows as a new ``metadata().id`` or a version that went back.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError, TableNotFoundError

from profilesync.errors import (
    ConfigurationError,
    NeedsResyncError,
    NotFoundError,
    RetentionExceededError,
)
from profilesync.mapping import quote
from profilesync.model import Checkpoint, Connection, Mapping
from profilesync.sources.base import OP, ORD, Changes, Check, change_schema, empty_reader
from profilesync.sources.deltacommon import (
    CDF,
    CHANGE_TYPE,
    COMMIT_VERSION,
    cdf_missing,
    cdf_off_error,
    cdf_on,
    change_ops,
    check_feed_since,
    check_identity,
    check_not_replaced,
    expired,
    retention_checks,
)

#: operations that may write new table metadata (and so switch the change data feed)
_METADATA_OPS = {
    "SET TBLPROPERTIES",
    "UNSET TBLPROPERTIES",
    "CREATE TABLE",
    "CREATE OR REPLACE TABLE",
    "REPLACE TABLE",
}


class DeltaSource:
    kind: ClassVar[str] = "delta"
    dialect: ClassVar[str] = "databricks"
    supports_cdc: ClassVar[bool] = True
    supports_query: ClassVar[bool] = False
    secret_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, connection: Connection, source_name: str = "") -> None:
        self.root = Path(connection.config["path"])
        self.source_name = source_name

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        path = config.get("path")
        if not path:
            raise ConfigurationError(
                "a delta connection needs --path DIR (a directory of Delta tables)"
            )
        resolved = Path(path).expanduser().resolve()
        if not resolved.is_dir():
            raise ConfigurationError(
                f"{resolved} is not a directory: --path must hold Delta tables"
            )
        return {"path": str(resolved)}

    # -- discovery -------------------------------------------------------------------
    def list_tables(self) -> list[str]:
        tables = []
        for dirpath, dirnames, _ in os.walk(self.root):
            if "_delta_log" in dirnames:
                rel = Path(dirpath).relative_to(self.root)
                if rel.parts:
                    tables.append(".".join(rel.parts))
                dirnames.clear()
            dirnames[:] = [d for d in dirnames if not d.startswith((".", "_"))]
        return sorted(tables)

    def table_path(self, table: str) -> Path:
        return self.root.joinpath(*table.split("."))

    def _open(self, table: str, version: int | None = None) -> DeltaTable:
        try:
            return DeltaTable(str(self.table_path(table)), version=version)
        except TableNotFoundError:
            raise NotFoundError(
                f"Delta table {table!r} not found under {self.root} "
                f"(tables there: {', '.join(self.list_tables()) or 'none'})"
            ) from None

    def table_schema(self, table: str) -> pa.Schema:
        return pa.schema(self._open(table).schema().to_arrow())

    # -- test mapping ----------------------------------------------------------------
    def check(self, mapping: Mapping, frequency_seconds: int, strategy: str) -> list[Check]:
        dt = self._open(mapping.table)
        config = dt.metadata().configuration
        checks = [Check("table", "pass", f"Delta table {mapping.table} at version {dt.version()}")]
        if strategy == "diff":
            checks.append(
                Check(
                    "strategy",
                    "info",
                    "snapshot diff: every sync reads the whole table and applies only rows that differ",
                )
            )
            return checks
        if not cdf_on(config):
            checks.append(cdf_missing(mapping.table))
            return checks
        since = self.cdf_enabled_since(dt)
        checks.append(Check("change data feed", "pass", f"{CDF} = true since version {since}"))
        checks.extend(retention_checks(mapping.table, config, frequency_seconds))
        return checks

    def cdf_enabled_since(self, dt: DeltaTable) -> int:
        """The first version from which the change data feed has been on without a break."""
        # Only commits that may write metadata can switch the feed; the version a walk
        # back from the newest commit returns is the last such commit that turned it on.
        since = oldest = dt.version()
        for commit in dt.history():  # newest first; only retained commits
            version = oldest = int(commit["version"])
            op = commit.get("operation", "")
            mode = (commit.get("operationParameters") or {}).get("mode", "")
            may_change = op in _METADATA_OPS or (op == "WRITE" and mode != "Append") or version == 0
            if may_change:
                if not cdf_on(DeltaTable(dt.table_uri, version=version).metadata().configuration):
                    return since
                since = version
        if oldest != since and cdf_on(
            DeltaTable(dt.table_uri, version=oldest).metadata().configuration
        ):
            return oldest  # on through all the retained history
        return since

    # -- reading -----------------------------------------------------------------------
    def snapshot(self, mapping: Mapping, limit: int | None = None) -> Changes:
        dt = self._open(mapping.table)
        self._require_columns(dt, mapping)
        version = dt.version()
        checkpoint = Checkpoint(str(version), str(dt.metadata().id))
        dataset = dt.to_pyarrow_dataset()
        reader = dataset.scanner(columns=list(mapping.columns)).to_reader()
        if limit is not None:
            reader = pa.RecordBatchReader.from_batches(reader.schema, _limit(reader, limit))
        return Changes(reader, checkpoint, full=True)

    def changes(self, mapping: Mapping, checkpoint: Checkpoint) -> Changes:
        dt = self._open(mapping.table)
        version, identity = dt.version(), str(dt.metadata().id)
        since = int(checkpoint.position)
        check_identity(mapping.table, checkpoint, identity, version, self.source_name)
        self._require_columns(dt, mapping)
        history = dt.history(limit=max(version - since, 1))
        commits = ((int(c["version"]), c.get("operation", "")) for c in history)
        check_not_replaced(mapping.table, commits, since, self.source_name)
        if not cdf_on(dt.metadata().configuration):
            raise cdf_off_error(mapping.table, self.source_name)
        new = Checkpoint(str(version), identity)
        schema = self._change_schema(dt, mapping)
        if version == since:
            return Changes(empty_reader(schema), new, full=False)
        self._check_retained(dt, mapping.table, since)
        batches = self._ops(
            self._load_cdf(dt, mapping, since, version), schema, mapping.table, since
        )
        return Changes(pa.RecordBatchReader.from_batches(schema, batches), new, full=False)

    def _check_retained(self, dt: DeltaTable, table: str, since: int) -> None:
        # expired log first: with it gone, where the feed was enabled cannot be told
        oldest = min(int(c["version"]) for c in dt.history())
        if oldest > since + 1:
            raise self._expired(
                table, f"the Delta log starts at version {oldest} (log cleanup)", since
            )
        check_feed_since(table, self.cdf_enabled_since(dt), since, self.source_name)

    def _load_cdf(
        self, dt: DeltaTable, mapping: Mapping, since: int, version: int
    ) -> pa.RecordBatchReader:
        # delta-rs reads the columns as SQL: quoted, "userId" and "Plan Name" work too
        columns = [quote(c) for c in (*mapping.columns, CHANGE_TYPE, COMMIT_VERSION)]
        try:
            return pa.RecordBatchReader.from_stream(
                dt.load_cdf(starting_version=since + 1, ending_version=version, columns=columns)
            )
        except DeltaError as exc:
            raise self._expired(mapping.table, str(exc), since) from exc

    def _require_columns(self, dt: DeltaTable, mapping: Mapping) -> None:
        names = set(pa.schema(dt.schema().to_arrow()).names)
        missing = [c for c in mapping.columns if c not in names]
        if missing:
            raise ConfigurationError(
                f"table {mapping.table} no longer has column(s) {', '.join(missing)} that source "
                f"{self.source_name!r} maps (it has: {', '.join(sorted(names))}): change the source's "
                "mapping, or restore the column(s)"
            )

    def _change_schema(self, dt: DeltaTable, mapping: Mapping) -> pa.Schema:
        table = pa.schema(dt.schema().to_arrow())
        return change_schema(pa.schema([table.field(c) for c in mapping.columns]))

    def _ops(
        self, raw: pa.RecordBatchReader, schema: pa.Schema, table: str, since: int
    ) -> Iterator[pa.RecordBatch]:
        """CDF rows -> ``_op``/``_ord``; object-store 'not found' while reading means vacuum."""
        try:
            for batch in raw:
                op, order = change_ops(batch.column(CHANGE_TYPE), batch.column(COMMIT_VERSION))
                columns = [self._cast(batch, f, table) for f in schema if f.name not in (OP, ORD)]
                yield pa.RecordBatch.from_arrays([*columns, op, order], schema=schema)
        except (OSError, pa.ArrowInvalid, DeltaError) as exc:
            if "not found" in str(exc).lower() or "no such file" in str(exc).lower():
                raise self._expired(
                    table, "data files of those versions were removed (VACUUM)", since
                ) from exc
            if "cast error" in str(exc).lower():  # delta-rs reads old files as the new schema
                raise self._type_changed(
                    table, "a column", str(exc).split("Cast error: ")[-1]
                ) from exc
            raise

    def _cast(self, batch: pa.RecordBatch, field: pa.Field, table: str) -> pa.Array:
        """Older commits to the table's current type; a type change they cannot take is a resync."""
        column = batch.column(field.name)
        try:
            return column.cast(field.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            what = f"column {field.name!r} ({column.type} -> {field.type})"
            raise self._type_changed(table, what, str(exc)) from exc

    def _type_changed(self, table: str, what: str, detail: str) -> NeedsResyncError:
        return NeedsResyncError(
            f"{what} of {table} changed type (a table rewrite or dbt full refresh) and earlier "
            f"changes cannot be converted ({detail}). Nothing was applied. Run `profilesync sync "
            f"{self.source_name} --resync` to diff the table as it is now against the store."
        )

    def _expired(self, table: str, why: str, since: int) -> RetentionExceededError:
        return expired(table, f"after version {since}", why, self.source_name)

    def release(self, mapping: Mapping) -> None:
        return None

    def close(self) -> None:
        return None


def _limit(reader: pa.RecordBatchReader, limit: int) -> Iterator[pa.RecordBatch]:
    left = limit
    for batch in reader:
        if left <= 0:
            return
        yield batch.slice(0, left)
        left -= batch.num_rows
