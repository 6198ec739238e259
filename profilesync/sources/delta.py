"""Delta Lake tables on a file system, read with delta-rs (``deltalake``).

A connection is a directory; every sub-directory holding a ``_delta_log`` is a table,
named by its relative path with ``/`` written as ``.``. Snapshots read one table
version; changes come from the change data feed (``load_cdf``) after the checkpoint's
version. Drop-and-replace shows as a new ``metadata().id`` or a version that went back.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError, TableNotFoundError

from profilesync.errors import (
    ChangeTrackingError,
    ConfigurationError,
    NotFoundError,
    RetentionExceededError,
    TableReplacedError,
)
from profilesync.mapping import quote
from profilesync.model import Checkpoint, Connection, Mapping, format_frequency
from profilesync.sources.base import DELETE, OP, ORD, UPSERT, Changes, Check

CDF = "delta.enableChangeDataFeed"
LOG_RETENTION = "delta.logRetentionDuration"
FILE_RETENTION = "delta.deletedFileRetentionDuration"
DEFAULT_LOG_RETENTION = "interval 30 days"
DEFAULT_FILE_RETENTION = "interval 1 week"
WEEK = 7 * 86400
#: operations that may write new table metadata (and so switch the change data feed)
_METADATA_OPS = {
    "SET TBLPROPERTIES",
    "UNSET TBLPROPERTIES",
    "CREATE TABLE",
    "CREATE OR REPLACE TABLE",
    "REPLACE TABLE",
}
_REPLACE_OPS = {"CREATE OR REPLACE TABLE", "REPLACE TABLE"}
_INTERVAL = re.compile(r"^\s*(?:interval\s+)?(\d+)\s+(second|minute|hour|day|week)s?\s*$", re.I)
_UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": WEEK}


def interval_seconds(text: str) -> int | None:
    """Delta's ``interval 7 days`` -> seconds (None when unreadable)."""
    match = _INTERVAL.match(text)
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()] if match else None


def _cdf_on(configuration: dict[str, str]) -> bool:
    return configuration.get(CDF, "false").strip().lower() == "true"


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
        if not _cdf_on(config):
            checks.append(self._cdf_missing(mapping.table))
            return checks
        since = self.cdf_enabled_since(dt)
        checks.append(Check("change data feed", "pass", f"{CDF} = true since version {since}"))
        checks.extend(self._retention_checks(config, frequency_seconds))
        return checks

    def _cdf_missing(self, table: str) -> Check:
        return Check(
            "change data feed",
            "fail",
            f"{CDF} is not enabled on {table}: changes cannot be read incrementally. "
            "Enable it (or choose --strategy diff to re-read the table every sync).",
            f"ALTER TABLE {table} SET TBLPROPERTIES ({CDF} = true)",
        )

    def _retention_checks(self, config: dict[str, str], frequency_seconds: int) -> list[Check]:
        checks = []
        for key, default in (
            (LOG_RETENTION, DEFAULT_LOG_RETENTION),
            (FILE_RETENTION, DEFAULT_FILE_RETENTION),
        ):
            value = config.get(key, default)
            seconds = interval_seconds(value)
            if seconds is None:
                checks.append(
                    Check(key, "warn", f"{key} = {value!r} is not a duration profilesync reads")
                )
            elif seconds < frequency_seconds:
                checks.append(
                    Check(
                        key,
                        "fail",
                        f"{key} = {value} is shorter than the sync frequency {format_frequency(frequency_seconds)}: "
                        "changes would expire before they are read",
                        f"ALTER TABLE <table> SET TBLPROPERTIES ({key} = 'interval 7 days')",
                    )
                )
            elif seconds < WEEK:
                checks.append(
                    Check(
                        key,
                        "warn",
                        f"{key} = {value} is under 7 days: a paused or failing source will need a resync sooner",
                    )
                )
            else:
                checks.append(Check(key, "pass", f"{key} = {value}"))
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
                if not _cdf_on(DeltaTable(dt.table_uri, version=version).metadata().configuration):
                    return since
                since = version
        if oldest != since and _cdf_on(
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
        self._check_identity(mapping.table, checkpoint, identity, version)
        self._require_columns(dt, mapping)
        history = dt.history(limit=max(version - since, 1))
        if any(c.get("operation") in _REPLACE_OPS and int(c["version"]) > since for c in history):
            raise self._replaced(
                mapping.table, "the table was replaced (CREATE OR REPLACE) after the checkpoint"
            )
        if not _cdf_on(dt.metadata().configuration):
            raise ChangeTrackingError(
                f"{CDF} is off on {mapping.table}: {self._cdf_missing(mapping.table).fix_sql}; "
                f"then run `profilesync sync {self.source_name} --resync`"
            )
        new = Checkpoint(str(version), identity)
        if version == since:
            return Changes(
                pa.RecordBatchReader.from_batches(self._change_schema(dt, mapping), []),
                new,
                full=False,
            )
        # expired log first: with it gone, where the feed was enabled cannot be told
        oldest = min(int(c["version"]) for c in dt.history())
        if oldest > since + 1:
            raise self._expired(
                mapping.table, f"the Delta log starts at version {oldest} (log cleanup)", since
            )
        enabled = self.cdf_enabled_since(dt)
        if enabled > since + 1:
            raise RetentionExceededError(
                f"the change data feed of {mapping.table} was enabled at version {enabled}, after the "
                f"checkpoint (version {since}): changes in between were never recorded. "
                f"Run `profilesync sync {self.source_name} --resync` to diff the table against the store."
            )
        try:
            raw = pa.RecordBatchReader.from_stream(
                dt.load_cdf(
                    starting_version=since + 1,
                    ending_version=version,
                    # delta-rs reads these as SQL: quoted, "userId" and "Plan Name" work too
                    columns=[
                        quote(c) for c in (*mapping.columns, "_change_type", "_commit_version")
                    ],
                )
            )
        except DeltaError as exc:
            raise self._expired(mapping.table, str(exc), since) from exc
        schema = self._change_schema(dt, mapping)
        return Changes(
            pa.RecordBatchReader.from_batches(schema, self._ops(raw, schema, mapping.table, since)),
            new,
            full=False,
        )

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
        fields = [table.field(c) for c in mapping.columns]
        return pa.schema([*fields, pa.field(OP, pa.string()), pa.field(ORD, pa.int64())])

    def _ops(
        self, raw: pa.RecordBatchReader, schema: pa.Schema, table: str, since: int
    ) -> Iterator[pa.RecordBatch]:
        """CDF rows -> ``_op``/``_ord``; object-store 'not found' while reading means vacuum."""
        try:
            for batch in raw:
                kind = pc.cast(batch.column("_change_type"), pa.string())
                upsert = pc.is_in(kind, pa.array(["insert", "update_postimage"]))
                version = pc.cast(batch.column("_commit_version"), pa.int64())
                order = pc.add(pc.multiply(version, 2), pc.cast(upsert, pa.int64()))
                op = pc.if_else(upsert, UPSERT, DELETE)
                columns = [
                    batch.column(f.name).cast(f.type) for f in schema if f.name not in (OP, ORD)
                ]
                yield pa.RecordBatch.from_arrays([*columns, op, order], schema=schema)
        except (OSError, pa.ArrowInvalid, DeltaError) as exc:
            if "not found" in str(exc).lower() or "no such file" in str(exc).lower():
                raise self._expired(
                    table, "data files of those versions were removed (VACUUM)", since
                ) from exc
            raise

    def _check_identity(
        self, table: str, checkpoint: Checkpoint, identity: str, version: int
    ) -> None:
        if identity != checkpoint.identity:
            raise self._replaced(
                table, f"Delta table id changed from {checkpoint.identity} to {identity}"
            )
        if version < int(checkpoint.position):
            raise self._replaced(
                table, f"its version went back from {checkpoint.position} to {version}"
            )

    def _replaced(self, table: str, why: str) -> TableReplacedError:
        return TableReplacedError(
            f"table {table} was dropped and re-created ({why}), as a dbt full refresh or "
            "CREATE OR REPLACE TABLE does. Nothing was applied. CDC needs incremental models; "
            f"run `profilesync sync {self.source_name} --resync` to diff the new table against the store."
        )

    def _expired(self, table: str, why: str, since: int) -> RetentionExceededError:
        return RetentionExceededError(
            f"the changes of {table} after version {since} are no longer retained: {why}. "
            f"Nothing was applied. Raise {LOG_RETENTION} / {FILE_RETENTION} above the sync frequency, and run "
            f"`profilesync sync {self.source_name} --resync` to diff the table against the store."
        )

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
