"""Delta Lake tables on a file system, read with delta-rs (``deltalake``).

A connection is a directory; every sub-directory holding a ``_delta_log`` is a table,
named by its relative path with ``/`` written as ``.``, and a name never leads outside
the connection directory. Snapshots read one table version; changes come from the change
data feed (``load_cdf``) after the checkpoint's version. Drop-and-replace shows as a new
``metadata().id``; a table restored from a copy shows as a version that went back, or as
another commit at the checkpoint's version (the checkpoint keeps a hash of that commit's
log entry). Errors delta-rs and pyarrow raise for a broken table (damaged log, missing
files, no permission) are translated here, by type and message, into errors that say
what to do.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.dataset as ds
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError, TableNotFoundError

from profilesync.errors import (
    ConfigurationError,
    ConnectionSettingsError,
    NeedsResyncError,
    NotFoundError,
    ProfilesyncError,
    RetentionExceededError,
    resync_fixes,
)
from profilesync.mapping import quote
from profilesync.model import Checkpoint, Connection, Mapping
from profilesync.warehouses.delta.rules import (
    CHANGE_TYPE,
    COMMIT_SHA256,
    COMMIT_TIMESTAMP,
    COMMIT_VERSION,
    FeedInspection,
    cdf_off_error,
    cdf_on,
    change_ops,
    check_feed_since,
    check_identity,
    check_not_replaced,
    check_same_commit,
    damaged,
    expired,
    judge_feed,
)
from profilesync.warehouses.delta.spec import SPEC
from profilesync.warehouses.protocol import OP, ORD, Changes, Check, change_schema, empty_reader
from profilesync.warehouses.rules import DIFF_NOTE
from profilesync.warehouses.spec import ConfigSpec, FromSpec

LOG = "_delta_log"
#: delta-rs's message when a column's files hold another type than the table schema says
_CANNOT_CAST = re.compile(r"Cannot cast column '([^']+)' from '([^']+)'.*? to '([^']+)'")
_RESTORE_FIX = (
    "Restore the table's files from a backup (or copy the whole table directory again), "
    "or rewrite the table with the tool that owns it"
)

#: operations that may write new table metadata (and so switch the change data feed)
_METADATA_OPS = {
    "SET TBLPROPERTIES",
    "UNSET TBLPROPERTIES",
    "CREATE TABLE",
    "CREATE OR REPLACE TABLE",
    "REPLACE TABLE",
}


class DeltaWarehouse(FromSpec):
    kind: ClassVar[str] = "delta"
    dialect: ClassVar[str] = "databricks"
    supports_cdc: ClassVar[bool] = True
    supports_query: ClassVar[bool] = False
    holds_server_resources: ClassVar[bool] = False
    spec: ClassVar[ConfigSpec] = SPEC

    def __init__(self, connection: Connection, source_name: str = "") -> None:
        self.root = Path(connection.config["path"])
        self.connection_name = connection.name
        self.source_name = source_name

    # -- discovery -------------------------------------------------------------------
    def list_tables(self) -> list[str]:
        return self._walk()[0]

    def unreadable_tables(self) -> dict[str, str]:
        """Tables (or directories that may hold tables) this process cannot read, and why.

        ``list_tables`` names only what it could see; these are the places it could not
        look into, so a listing can say so instead of leaving them out without a word.
        """
        return self._walk()[1]

    def _walk(self) -> tuple[list[str], dict[str, str]]:
        tables: list[str] = []
        problems: dict[str, str] = {}

        def unreadable(exc: OSError) -> None:
            rel = Path(exc.filename or self.root).relative_to(self.root)
            problems[".".join(rel.parts) or "."] = _os_reason(exc)

        for dirpath, dirnames, _ in os.walk(self.root, onerror=unreadable):
            if LOG in dirnames:
                rel = Path(dirpath).relative_to(self.root)
                if rel.parts:
                    tables.append(".".join(rel.parts))
                    try:
                        os.listdir(Path(dirpath, LOG))
                    except OSError as exc:
                        problems[".".join(rel.parts)] = _os_reason(exc)
                dirnames.clear()
            dirnames[:] = [d for d in dirnames if not d.startswith((".", "_"))]
        return sorted(tables), dict(sorted(problems.items()))

    def table_path(self, table: str) -> Path:
        """The table's directory; refused unless it is inside the connection directory.

        The table name comes from a user (CLI, API, UI), so it must not reach other
        files: an absolute path, ``..``, a path separator or an empty part is not a
        name, and a symbolic link may lead only to another place inside the connection.
        """
        root = self.root.resolve()
        rule = (
            f"Delta tables are named by their directory under the connection, with dots for "
            f"slashes: prod.users is {root / 'prod' / 'users'}"
        )
        parts = table.split(".")
        if not table or any(not p or any(c in p for c in "/\\\0") for p in parts):
            raise ConfigurationError(
                f"{table!r} is not a table name of connection {self.connection_name!r}: {rule} "
                "(absolute paths, '..', path separators and empty parts are refused)"
            )
        path = root.joinpath(*parts).resolve()
        if not path.is_relative_to(root):
            raise ConfigurationError(
                f"table {table!r} is a symbolic link that leads outside the directory of "
                f"connection {self.connection_name!r}: {rule}. Copy or link the table inside it"
            )
        return path

    def _open(self, table: str, version: int | None = None) -> DeltaTable:
        if not self.root.is_dir():  # the whole lake is gone, not one table
            name = self.connection_name
            raise ConnectionSettingsError(
                f"the directory {self.root} of connection {name!r} does not exist (moved, "
                f"renamed or not mounted): run `profilesync connection edit {name} --set "
                "path=DIR` with the directory its Delta tables are in now, or put them back",
                cli_fix=f"profilesync connection edit {name} --set path=DIR",
            )
        path = self.table_path(table)
        if path.exists() and not path.is_dir():
            raise ConfigurationError(
                f"{path} is a file, not a Delta table directory: table {table!r} of connection "
                f"{self.connection_name!r} must be a directory holding {LOG}. Restore the "
                "table, or change the source's table"
            )
        try:
            return DeltaTable(str(path), version=version)
        except TableNotFoundError:
            raise NotFoundError(
                f"Delta table {table!r} not found under {self.root} "
                f"(tables there: {', '.join(self.list_tables()) or 'none'}): restore it, or "
                "point the source at another table"
            ) from None

    @contextmanager
    def _reading(self, table: str) -> Iterator[None]:
        """Broken-table errors of delta-rs, pyarrow and the OS -> what the user must do."""
        try:
            yield
        except (DeltaError, OSError) as exc:
            translated = self._translate(table, exc)
            if translated is None:
                raise
            raise translated from exc

    def _translate(self, table: str, exc: BaseException) -> ProfilesyncError | None:
        """The error a known broken state of the table shows as; None for anything else."""
        text = str(exc)
        if isinstance(exc, PermissionError) or (
            isinstance(exc, OSError) and "permission denied" in text.lower()
        ):
            return ConfigurationError(
                f"profilesync cannot read Delta table {table} (permission denied): give the "
                f"user running profilesync read access to {self.table_path(table)} and every "
                "file under it, then sync again"
            )
        if isinstance(exc, DeltaError) and "Json error" in text:
            where = self._first_bad_entry(table)
            return damaged(
                table,
                f"log entry {where} is not valid JSON (truncated or overwritten)",
                _RESTORE_FIX,
            )
        if isinstance(exc, DeltaError) and "Expected contiguous commit files" in text:
            return damaged(
                table, f"its {LOG} is missing commit files (a gap in its versions)", _RESTORE_FIX
            )
        if isinstance(exc, FileNotFoundError) or (
            isinstance(exc, OSError) and re.search(r"Object at location \S+ not found", text)
        ):
            missing = re.search(r"Object at location (\S+) not found", text)
            name = Path(missing.group(1)).name if missing else "a data file"
            return damaged(
                table,
                f"{name}, which its log lists, is missing (deleted outside Delta)",
                "Restore the file, or restore the table to a version whose files all exist",
            )
        return None

    def _first_bad_entry(self, table: str) -> str:
        """The first ``_delta_log/NNN.json`` that does not parse (only read on failure)."""
        log = self.table_path(table) / LOG
        for entry in sorted(log.glob("*.json")):
            try:
                for line in entry.read_text(encoding="utf-8").splitlines():
                    if line.strip():
                        json.loads(line)
            except (ValueError, UnicodeDecodeError):
                return f"{LOG}/{entry.name}"
        return f"of {LOG}"

    def _commit_marks(self, table: str, version: int) -> dict[str, Any]:
        """A hash and the commit time of the log entry at ``version`` (kept in the checkpoint).

        Commit files are immutable in Delta, so another hash at the same version means the
        table's history is not the one the store synced. A cleaned-up entry gives no marks.
        """
        try:
            raw = (self.table_path(table) / LOG / f"{version:020d}.json").read_bytes()
        except FileNotFoundError:
            return {}
        marks: dict[str, Any] = {COMMIT_SHA256: hashlib.sha256(raw).hexdigest()}
        for line in raw.splitlines():
            if b'"commitInfo"' in line:
                try:
                    info = json.loads(line).get("commitInfo") or {}
                except ValueError:
                    break
                if isinstance(info.get("timestamp"), int):
                    marks[COMMIT_TIMESTAMP] = info["timestamp"]
                break
        return marks

    def change_feed_states(self, tables: list[str]) -> dict[str, bool | None]:
        """Whether each table's change data feed is on (its current properties, read from
        the log's latest state); None for a table that cannot be read."""
        states: dict[str, bool | None] = {}
        for table in tables:
            try:
                with self._reading(table):
                    states[table] = cdf_on(self._open(table).metadata().configuration)
            except (ProfilesyncError, DeltaError, OSError):
                states[table] = None
        return states

    def table_schema(self, table: str) -> pa.Schema:
        with self._reading(table):
            return pa.schema(self._open(table).schema().to_arrow())

    # -- test mapping ----------------------------------------------------------------
    def inspect(self, mapping: Mapping, strategy: str = "cdc") -> FeedInspection:
        """The table's version and properties (and since when its feed is on, for CDC)."""
        with self._reading(mapping.table):
            dt = self._open(mapping.table)
            config = dict(dt.metadata().configuration)
            since = self.cdf_enabled_since(dt) if strategy != "diff" and cdf_on(config) else None
            found = f"Delta table {mapping.table} at version {dt.version()}"
            path = str(self.table_path(mapping.table))
            return FeedInspection(mapping.table, found, config, since, path)

    def judge(
        self, inspection: FeedInspection, frequency_seconds: int, strategy: str
    ) -> list[Check]:
        """The checks for ``inspection``; the table is not read again."""
        checks = [Check("table", "pass", inspection.found)]
        if strategy == "diff":
            return [*checks, Check("strategy", "info", DIFF_NOTE)]
        return [*checks, *judge_feed(inspection, frequency_seconds)]

    def check(self, mapping: Mapping, frequency_seconds: int, strategy: str) -> list[Check]:
        return self.judge(self.inspect(mapping, strategy), frequency_seconds, strategy)

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
        with self._reading(mapping.table):
            dt = self._open(mapping.table)
            self._require_columns(dt, mapping)
            version = dt.version()
            marks = self._commit_marks(mapping.table, version)
            checkpoint = Checkpoint(str(version), str(dt.metadata().id), marks)
            dataset = dt.to_pyarrow_dataset()
            reader = dataset.scanner(
                columns=list(mapping.columns),
                # one file and a few batches in flight, no whole row group buffered ahead:
                # what a sync holds while reading stays small whatever the table's size
                batch_readahead=2,
                fragment_readahead=1,
                fragment_scan_options=ds.ParquetFragmentScanOptions(pre_buffer=False),
            ).to_reader()
        if limit is not None:
            reader = pa.RecordBatchReader.from_batches(reader.schema, _limit(reader, limit))
        return Changes(self._guarded(reader, mapping.table), checkpoint, full=True)

    def _guarded(self, reader: pa.RecordBatchReader, table: str) -> pa.RecordBatchReader:
        """Files are read while the engine iterates: translate a broken table there too."""

        def batches() -> Iterator[pa.RecordBatch]:
            with self._reading(table):
                yield from reader

        return pa.RecordBatchReader.from_batches(reader.schema, batches())

    def changes(self, mapping: Mapping, checkpoint: Checkpoint) -> Changes:
        with self._reading(mapping.table):
            return self._changes(mapping, checkpoint)

    def _changes(self, mapping: Mapping, checkpoint: Checkpoint) -> Changes:
        dt = self._open(mapping.table)
        version, identity = dt.version(), str(dt.metadata().id)
        since = int(checkpoint.position)
        check_identity(mapping.table, checkpoint, identity, version, self.source_name)
        marks = self._commit_marks(mapping.table, since)
        check_same_commit(mapping.table, checkpoint, marks, self.source_name)
        self._require_columns(dt, mapping)
        history = dt.history(limit=max(version - since, 1))
        commits = ((int(c["version"]), c.get("operation", "")) for c in history)
        check_not_replaced(mapping.table, commits, since, self.source_name)
        if not cdf_on(dt.metadata().configuration):
            path = str(self.table_path(mapping.table))
            raise cdf_off_error(mapping.table, self.source_name, path)
        schema = self._change_schema(dt, mapping)
        if version == since:
            return Changes(empty_reader(schema), Checkpoint(str(version), identity, marks), False)
        new = Checkpoint(str(version), identity, self._commit_marks(mapping.table, version))
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
            translated = self._translate(mapping.table, exc)
            raise translated or self._expired(mapping.table, str(exc), since) from exc

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
        """CDF rows -> ``_op``/``_ord``; errors while reading the feed -> what to do."""
        try:
            for batch in raw:
                op, order = change_ops(batch.column(CHANGE_TYPE), batch.column(COMMIT_VERSION))
                columns = [self._cast(batch, f, table) for f in schema if f.name not in (OP, ORD)]
                yield pa.RecordBatch.from_arrays([*columns, op, order], schema=schema)
        except (OSError, pa.ArrowInvalid, DeltaError) as exc:
            raise self._feed_error(exc, table, since) from exc

    def _feed_error(self, exc: Exception, table: str, since: int) -> Exception:
        """Object-store 'not found' while reading the feed means vacuum; a cast error a type change."""
        text = str(exc)
        if "not found" in text.lower() or "no such file" in text.lower():
            return self._expired(
                table,
                "data files of those versions were removed (VACUUM, or deleted outside Delta)",
                since,
            )
        cannot_cast = _CANNOT_CAST.search(text)
        if cannot_cast:  # delta-rs reads older files as the table's new type
            name, old, new = cannot_cast.groups()
            return self._type_changed(table, f"column {name!r} ({old} -> {new})", "")
        if "cast error" in text.lower():
            return self._type_changed(table, "a column", text.split("Cast error: ")[-1])
        return self._translate(table, exc) or exc

    def _cast(self, batch: pa.RecordBatch, field: pa.Field, table: str) -> pa.Array:
        """Older commits to the table's current type; a type change they cannot take is a resync."""
        column = batch.column(field.name)
        try:
            return column.cast(field.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            what = f"column {field.name!r} ({column.type} -> {field.type})"
            raise self._type_changed(table, what, str(exc)) from exc

    def _type_changed(self, table: str, what: str, detail: str) -> NeedsResyncError:
        because = f" ({detail})" if detail else ""
        return NeedsResyncError(
            f"{what} of {table} changed type (a table rewrite or dbt full refresh) and earlier "
            f"changes cannot be converted{because}. Nothing was applied. Run `profilesync sync "
            f"{self.source_name} --resync` to diff the table as it is now against the store.",
            **resync_fixes(self.source_name),
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


def _os_reason(exc: OSError) -> str:
    """``Permission denied`` and the like, without the path the listing already names."""
    if exc.errno == errno.EACCES:
        return "permission denied: give the user running profilesync read access"
    return exc.strerror or type(exc).__name__


#: the name before warehouses got a folder each; kept for one release
DeltaSource = DeltaWarehouse
