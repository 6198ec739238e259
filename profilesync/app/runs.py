"""Run use cases: sync a source now (or resync it), its run history and rejected rows.

A sync run here by hand tells the alert channels what it changed (a failure, a stop, a
recovery, a quota threshold) once it is over; the scheduler of ``serve`` calls
:func:`sync_source` and tells them itself, once its retries are decided."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from profilesync.app import _engine as engine
from profilesync.app import alerts
from profilesync.app.home import Store, session
from profilesync.errors import ProfilesyncError
from profilesync.model import SyncResult

#: ``progress(stage, rows)`` as a sync reads and applies
Progress = Callable[[str, int], None]


def sync_now(
    home: Path | str, name: str, *, resync: bool = False, progress: Progress | None = None
) -> SyncResult:
    """Run one sync of ``name`` now, holding its lock so no other process syncs it
    meanwhile; then the alert channels hear of what changed (a manual run is not retried),
    once the lock is released."""
    pending: alerts.Pending = []
    with contextlib.ExitStack() as source_lock:
        # the lock first: a sync elsewhere is refused at once, before the store is opened
        source_lock.enter_context(engine.source_lock(home, name))
        with session(home) as store:
            try:
                result = engine.sync(store, name, resync=resync, locked=True, progress=progress)
            except ProfilesyncError as exc:
                pending = alerts.decide_run(store, name, error=exc)
                raise
            else:
                pending = alerts.decide_run(store, name)
            finally:
                source_lock.close()  # released before any receiver is called
                alerts.deliver(store, pending)
            return result


def sync_source(store: Store, name: str, *, resync: bool = False) -> SyncResult:
    """Run one sync of ``name`` on an open store (the engine takes the source's lock)."""
    return engine.sync(store, name, resync=resync)


def history(
    store: Store, name: str, limit: int = 20, *, with_rejected: bool = False
) -> list[dict[str, Any]]:
    """A source's runs, newest first; ``with_rejected`` adds each run's rejected rows."""
    store.get_source(name)
    runs = store.runs(name, limit)
    if with_rejected:
        for run in runs:
            run["rejected_rows"] = store.rejected_rows(run["id"]) if run["rejected"] else []
    return runs


def rejected_rows(store: Store, run_id: int, limit: int = 100) -> list[dict[str, Any]]:
    """The rows a run rejected, with the reason for each."""
    return store.rejected_rows(run_id, limit)
