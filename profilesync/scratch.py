"""Scratch DuckDB engines that spill to disk past a sync's memory budget.

A sync maps, validates and compacts its window in DuckDB, and some warehouses decode
their change streams there too. Each such engine is an in-memory database with a
``memory_limit`` and its own spill directory: a window larger than the budget goes to
disk instead of growing the process. The engine (:mod:`profilesync.engine.sync`) sets
the budget for the duration of a sync with :func:`budget`; anything that opens a scratch
engine inside it (the transform, a warehouse's decoder) gets its share without the
budget being passed through every call.

Measured with DuckDB 1.5.5: an in-memory database spills its tables and operators to
``temp_directory`` when over ``memory_limit``, also with external access off.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import duckdb

from profilesync.model import DEFAULT_MEMORY_LIMIT
from profilesync.sandbox import lock_down

#: spill directories of scratch engines start with this, under the budget's directory
SPILL_PREFIX = "sync-"
#: memory a DuckDB thread needs for its own buffers before spilling helps (measured: a
#: 1M-row join into a temp table fails at 32MB with 2 threads, completes with 1)
MEMORY_PER_THREAD = 100 * 1000**2


@dataclass(frozen=True)
class Budget:
    """Bytes the scratch engines of one sync may hold, and where they spill."""

    memory_limit: int = DEFAULT_MEMORY_LIMIT
    #: the home's temp directory; None: the system's (outside a sync: tests, previews)
    directory: Path | None = None
    #: whose sync (a source's name): names its spill directories
    owner: str = ""


_BUDGET: ContextVar[Budget | None] = ContextVar("profilesync_budget", default=None)


@contextmanager
def budget(memory_limit: int, directory: Path | None, owner: str = "") -> Iterator[Budget]:
    """Scratch engines opened inside take their share of ``memory_limit`` and spill under
    ``directory``; the spill directories a killed sync of ``owner`` left are removed first
    (the caller holds ``owner``'s lock)."""
    if directory is not None:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        remove_stale(directory, owner)
    token = _BUDGET.set(Budget(memory_limit, directory, owner))
    try:
        yield current()
    finally:
        _BUDGET.reset(token)


def current() -> Budget:
    """The budget of the sync this runs in; outside one, the default limit."""
    return _BUDGET.get() or Budget()


@contextmanager
def scratch(
    share: float = 0.5,
    *,
    allowed_dirs: Iterable[str] = (),
    allowed_paths: Iterable[str] = (),
) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB limited to ``share`` of the budget, locked down (see
    :func:`profilesync.sandbox.lock_down`), its spill directory removed when it closes.
    That directory is the only one it may write files to (:func:`spill_directory`)."""
    limit = max(int(current().memory_limit * share), 16 * 1000**2)
    spill = Path(tempfile.mkdtemp(prefix=_prefix(current().owner), dir=current().directory))
    con = duckdb.connect()
    try:
        con.execute(f"SET memory_limit = '{limit}B'")
        con.execute(f"SET threads = {threads_for(limit)}")
        con.execute(f"SET temp_directory = '{_literal(str(spill))}'")
        con.execute("SET enable_progress_bar = false")  # it would print into --json output
        con.execute("SET preserve_insertion_order = false")  # rows carry their own order
        lock_down(con, allowed_dirs=[str(spill), *allowed_dirs], allowed_paths=allowed_paths)
        yield con
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)


def spill_directory(con: duckdb.DuckDBPyConnection) -> Path:
    """The spill directory of a scratch engine: where it may write files of its own."""
    row = con.execute("SELECT current_setting('temp_directory')").fetchone()
    assert row is not None
    return Path(row[0])


def threads_for(memory_limit: int) -> int:
    """Threads a DuckDB with ``memory_limit`` can feed: at least one, at most the CPUs."""
    return max(1, min(os.cpu_count() or 1, memory_limit // MEMORY_PER_THREAD))


def remove_stale(directory: Path, owner: str) -> None:
    """Spill directories ``owner``'s syncs left behind when a process was killed mid-sync.
    Safe while the caller holds ``owner``'s sync lock: no other live sync uses them."""
    for entry in directory.glob(f"{_prefix(owner)}*"):
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)


def _prefix(owner: str) -> str:
    """``+`` is no character of a source name: ``a`` never matches ``a-b``'s directories."""
    return f"{SPILL_PREFIX}{owner}+"


def _literal(text: str) -> str:
    return text.replace("'", "''")
