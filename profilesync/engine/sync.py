"""One sync, start to end: read -> map/validate/compact -> meter -> apply in one transaction.

Read top to bottom: :func:`sync` takes the source's lock and records a failed run when
anything goes wrong; :func:`_run` picks how to read (initial snapshot, diff, resync or the
change stream since the checkpoint) and streams what it read through the transform into
the store, with the new checkpoint and the quota; the store applies them all or nothing.
Every engine on the way spills to the home's temp directory past the
``sync_memory_limit`` setting, so a window of any size syncs in bounded memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import nullcontext

import duckdb
import pyarrow as pa

from profilesync.engine.checks import failures, resolve_mapping, source_checks, test_mapping
from profilesync.engine.locks import source_lock
from profilesync.engine.resync import clear_resync, mark_resync, pending_resync
from profilesync.engine.transform import transformed
from profilesync.errors import (
    ChangeTrackingError,
    ConcurrentSyncError,
    InternalError,
    ProfilesyncError,
    StoreCorruptedError,
    StoreFullError,
    SyncMemoryError,
    UiFix,
)
from profilesync.faults import fault
from profilesync.model import (
    MEMORY_LIMIT_SETTING,
    Source,
    SyncResult,
    memory_limit,
    now,
    peak_memory_bytes,
)
from profilesync.scratch import budget
from profilesync.store.home import first_line, store_error
from profilesync.store.protocol import TEMP_DIR, Store
from profilesync.warehouses import open_warehouse
from profilesync.warehouses.protocol import Changes, Warehouse

#: the engine's verbs in one place (checks and locks live in their own modules)
__all__ = [
    "Progress",
    "failures",
    "mark_resync",
    "pending_resync",
    "resolve_mapping",
    "source_checks",
    "source_lock",
    "sync",
    "test_mapping",
]

#: called with (stage, rows so far) while a sync reads; the CLI draws a progress bar with it
Progress = Callable[[str, int], None]


def sync(
    store: Store,
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
        pending = pending_resync(store, source)
        try:
            applied = _run(store, source, result, resync or pending is not None, progress)
            if pending is not None:
                # outside the sync's transaction: a crash before this runs one more resync,
                # which applies and meters nothing that is already in the store
                clear_resync(store, source, pending)
            return applied
        except ConcurrentSyncError:
            raise  # another sync holds the source (e.g. its Postgres slot): this one never ran
        except ProfilesyncError as exc:
            result.error, result.error_code = str(exc), exc.code
            result.peak_memory_bytes = peak_memory_bytes()
            store.record_failed_run(source, result)
            raise
        except Exception as exc:  # a bug: still a failed run a person can see, and one error class
            error = _environment_error(exc, store) or InternalError(
                f"the sync of {name!r} failed unexpectedly ({type(exc).__name__}: {exc}); nothing "
                "was applied. Rerun with --debug for the traceback and report it."
            )
            result.error, result.error_code = str(error), error.code
            result.peak_memory_bytes = peak_memory_bytes()
            store.record_failed_run(source, result)
            raise error from exc


def _run(
    store: Store, source: Source, result: SyncResult, resync: bool, progress: Progress | None
) -> SyncResult:
    limit = memory_limit(store.get_setting(MEMORY_LIMIT_SETTING))
    with budget(limit, store.home / TEMP_DIR, source.name):
        return _read_and_apply(store, source, result, resync, progress)


def _read_and_apply(
    store: Store, source: Source, result: SyncResult, resync: bool, progress: Progress | None
) -> SyncResult:
    connection = store.get_connection(source.connection)
    warehouse = open_warehouse(connection, source.name)
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
        with transformed(reader, source.mapping) as stream:
            fault("after_read")
            # the run record shows the process's peak so far; set again once applied
            result.peak_memory_bytes = peak_memory_bytes()
            applied = store.apply(
                source, stream, changes.checkpoint, result, full=changes.full, quota=store.quota()
            )
        applied.peak_memory_bytes = peak_memory_bytes()
        return applied
    finally:
        warehouse.close()


def _require_change_tracking(warehouse: Warehouse, source: Source) -> None:
    """A CDC source starts only where the next sync can follow its changes."""
    failed = failures(source_checks(warehouse, source))
    if failed:
        raise ChangeTrackingError(
            "the first sync was refused, nothing was read: "
            + "; ".join(failed)
            + f". Then run `profilesync sync {source.name}` again (`profilesync source test "
            f"{source.name}` shows every check).",
            cli_fix=f"profilesync sync {source.name}",
            ui_fix=UiFix(
                "Fix the failed checks in the warehouse (see the source's Test mapping), then Sync now",
                f"/sources/{source.name}#sync",
            ),
        )


def _snapshot(warehouse: Warehouse, source: Source) -> Changes:
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


def _environment_error(exc: Exception, store: Store) -> ProfilesyncError | None:
    """A full disk, a corrupted store or a memory limit too small for the sync, met anywhere
    in it (the transform's spill files included), is not a bug: name it and its fix."""
    if isinstance(exc, duckdb.OutOfMemoryException):
        return _memory_error(exc, memory_limit(store.get_setting(MEMORY_LIMIT_SETTING)))
    error = store_error(exc, store.home)
    return error if isinstance(error, StoreFullError | StoreCorruptedError) else None


def _memory_error(exc: Exception, limit: int) -> SyncMemoryError:
    return SyncMemoryError(
        f"the sync needs more working memory than sync_memory_limit ({limit:,} bytes) "
        f"allows, even spilling to disk ({first_line(str(exc))}). Nothing was applied. "
        "Raise the limit, e.g. `profilesync config set sync_memory_limit 1GB`, and sync again.",
        cli_fix="profilesync config set sync_memory_limit 1GB",
    )
