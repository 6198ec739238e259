"""One sync, start to end: read -> map/validate/compact -> meter -> apply in one transaction."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from profilesync.errors import (
    ChangeTrackingError,
    ConcurrentSyncError,
    ConfigurationError,
    InternalError,
    NotFoundError,
    ProfilesyncError,
    StoreCorruptedError,
    StoreFullError,
)
from profilesync.mapping import from_columns, from_query
from profilesync.model import Mapping, Source, SyncResult
from profilesync.sources import open_source
from profilesync.sources.base import Changes, Check, WarehouseSource
from profilesync.store.duckdb import DuckDBStore, _fault, json_value, now
from profilesync.store.home import store_error
from profilesync.sync.transform import DELETED, transform

#: called with (stage, rows so far) while a sync reads; the CLI draws a progress bar with it
Progress = Callable[[str, int], None]


def sync(
    store: DuckDBStore,
    name: str,
    *,
    resync: bool = False,
    progress: Progress | None = None,
    locked: bool = False,
) -> SyncResult:
    """Run one sync of source ``name``; raises ProfilesyncError after recording a failed run.

    ``resync`` re-reads the current snapshot and applies only rows that differ from the
    store: the way out after a drop-and-replace or an expired checkpoint. ``locked`` says
    the caller holds :func:`source_lock` already (the CLI takes it before opening the
    store, so a second sync is refused at once instead of waiting for the store file).
    """
    store.get_source(name)  # an unknown name is refused before any lock is taken
    with nullcontext() if locked else source_lock(store.home, name):
        source = store.get_source(name)  # under the lock: the checkpoint a sync just committed
        result = SyncResult(source=name, started_at=now())
        result.previous_checkpoint = source.checkpoint.position if source.checkpoint else None
        try:
            return _run(store, source, result, resync, progress)
        except ConcurrentSyncError:
            raise  # another sync holds the source (e.g. its Postgres slot): this one never ran
        except ProfilesyncError as exc:
            result.error, result.error_code = str(exc), exc.code
            store.record_failed_run(source, result)
            raise
        except Exception as exc:  # a bug: still a failed run a person can see, and one error class
            error = _environment_error(exc, store.home) or InternalError(
                f"the sync of {name!r} failed unexpectedly ({type(exc).__name__}: {exc}); nothing "
                "was applied. Rerun with --debug for the traceback and report it."
            )
            result.error, result.error_code = str(error), error.code
            store.record_failed_run(source, result)
            raise error from exc


def _run(
    store: DuckDBStore, source: Source, result: SyncResult, resync: bool, progress: Progress | None
) -> SyncResult:
    connection = store.get_connection(source.connection)
    warehouse = open_source(connection, source.name)
    try:
        if source.checkpoint is None:
            result.mode = "initial"
            if source.strategy == "cdc":
                _require_change_tracking(warehouse, source)
            changes = _snapshot(warehouse, source)
        elif resync or source.strategy == "diff":
            result.mode = "resync" if resync else "diff"
            changes = _snapshot(warehouse, source)
        else:
            changes = warehouse.changes(source.mapping, source.checkpoint)
        reader = _counting(changes.reader, progress) if progress else changes.reader
        transformed = transform(reader, source.mapping)
        _fault("after_read")
        result.read = transformed.read
        if progress:
            progress("applying", transformed.read)
        return store.apply(
            source, transformed, changes.checkpoint, result, full=changes.full, quota=store.quota()
        )
    finally:
        warehouse.close()


def source_checks(warehouse: WarehouseSource, source: Source) -> list[Check]:
    """What Test mapping checks in the warehouse, with CDC refused where the kind has none."""
    if source.strategy == "cdc" and not warehouse.supports_cdc:
        return [
            Check(
                "strategy",
                "fail",
                f"{warehouse.kind} tables cannot be read by change data capture: use the diff "
                "strategy (`--strategy diff`: each sync reads the whole result and applies only "
                "real differences)",
            )
        ]
    return warehouse.check(source.mapping, source.frequency_seconds, source.strategy)


def failures(checks: list[Check]) -> list[str]:
    """Each failed check as one line, with the SQL that fixes it."""
    return [
        f"{c.name}: {c.message}" + (f" (run: {c.fix_sql})" if c.fix_sql else "")
        for c in checks
        if c.level == "fail"
    ]


def _require_change_tracking(warehouse: WarehouseSource, source: Source) -> None:
    """A CDC source starts only where the next sync can follow its changes."""
    failed = failures(source_checks(warehouse, source))
    if failed:
        raise ChangeTrackingError(
            "the first sync was refused, nothing was read: "
            + "; ".join(failed)
            + f". Then run `profilesync sync {source.name}` again (`profilesync source test "
            f"{source.name}` shows every check)."
        )


def _snapshot(warehouse: WarehouseSource, source: Source) -> Changes:
    """A diff needs no change-stream position: a source whose position costs warehouse
    resources (a Postgres replication slot) reads a diff through ``diff_snapshot``."""
    diff_snapshot = getattr(warehouse, "diff_snapshot", None)
    if source.strategy == "diff" and diff_snapshot is not None:
        changes: Changes = diff_snapshot(source.mapping)
        return changes
    return warehouse.snapshot(source.mapping)


def _counting(reader: pa.RecordBatchReader, progress: Progress) -> pa.RecordBatchReader:
    def batches() -> Iterator[pa.RecordBatch]:
        seen = 0
        for batch in reader:
            seen += batch.num_rows
            progress("reading", seen)
            yield batch

    return pa.RecordBatchReader.from_batches(reader.schema, batches())


def _environment_error(exc: Exception, home: Path) -> ProfilesyncError | None:
    """A full disk or a corrupted store met anywhere in a sync (the transform's spill files
    included) is the machine's doing, not a bug: name it and its fix."""
    error = store_error(exc, home)
    return error if isinstance(error, StoreFullError | StoreCorruptedError) else None


@contextmanager
def source_lock(home: Path | DuckDBStore, name: str) -> Iterator[None]:
    """Two syncs of one source never overlap, across threads and processes (``flock``)."""
    locks = (home.home if isinstance(home, DuckDBStore) else Path(home)) / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    path = locks / f"{name.replace('/', '_')}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise ConcurrentSyncError(
                f"a sync of source {name!r} is already running (PID {holder}): wait for it to finish; "
                "a source never syncs twice at once"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


# -- test mapping ---------------------------------------------------------------------


def resolve_mapping(
    warehouse: WarehouseSource,
    *,
    table: str | None,
    query: str | None,
    user_id: str | None,
    properties: list[tuple[str, str]],
    strategy: str = "cdc",
) -> Mapping:
    """Build the mapping from either form and check its table and columns exist.

    Under ``diff`` a query the CDC form refuses (joins, CTEs, unions) runs in the
    warehouse as written, where the source kind can run SQL (``supports_query``).
    """
    if bool(table) == bool(query):
        raise ConfigurationError(
            "give either --table (with --user-id) or --query, not both or neither"
        )
    if query:
        try:
            mapping = from_query(query, warehouse.dialect)
        except ConfigurationError:
            if strategy != "diff" or not getattr(warehouse, "supports_query", False):
                raise
            return from_query(query, warehouse.dialect, pushdown=True)
    else:
        if not user_id:
            raise ConfigurationError(
                "--table needs --user-id COLUMN (the column holding the user id)"
            )
        assert table is not None
        mapping = from_columns(table, user_id, properties)
    schema = warehouse.table_schema(mapping.table)
    missing = [c for c in mapping.columns if c not in schema.names]
    if missing:
        raise NotFoundError(
            f"table {mapping.table} has no column(s) {', '.join(missing)} (it has: {', '.join(schema.names)})"
        )
    return mapping


def test_mapping(
    store: DuckDBStore, source: Source, preview_rows: int = 10, sample_limit: int | None = 100_000
) -> dict[str, Any]:
    """The dry check of "Test mapping": nothing is written to the store."""
    connection = store.get_connection(source.connection)
    warehouse = open_source(connection, source.name)
    try:
        checks: list[Check] = []
        try:
            store.check_property_names(source.name, source.mapping)
            checks.append(Check("property names", "pass", "unique across sources"))
        except ConfigurationError as exc:
            checks.append(Check("property names", "fail", str(exc)))
        checks.extend(source_checks(warehouse, source))
        sample = transform(
            warehouse.snapshot(source.mapping, limit=sample_limit).reader, source.mapping
        )
    finally:
        warehouse.close()
    preview = (
        sample.net.filter(pc.invert(sample.net.column(DELETED)))
        .drop_columns([DELETED])
        .slice(0, preview_rows)
    )
    ok = all(c.level != "fail" for c in checks)
    return {
        "source": source.name,
        "ok": ok,
        "checks": [c.to_json() for c in checks],
        "sampled_rows": sample.read,
        "preview": [{k: json_value(v) for k, v in row.items()} for row in preview.to_pylist()],
        "rejected": sample.rejected_count,
        "rejected_rows": [
            {"reason": r["reason"], "row": json.loads(r["row"])}
            for r in sample.rejected.slice(0, 50).to_pylist()
        ],
    }
