"""Which store backend a home opens: the one place outside ``profilesync.store`` naming it.

A home records its backend (``duckdb``, ``chdb`` or a ``clickhouse://`` URL) the first
time a store is opened on it; opened without one it uses the recorded one, and another is
refused (:mod:`profilesync.store.backends`). Everything that opens a store goes through
:func:`open_store`: the command line, the server and its scheduler, the demos.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from profilesync.errors import ProfilesyncError
from profilesync.model import json_value
from profilesync.store import CHOICES, STORE_ENV, parse_backend
from profilesync.store import open_store as _open_backend
from profilesync.store.home import SERVER_FILE, describe, running_server, store_error
from profilesync.store.protocol import Store

__all__ = [
    "CHOICES",
    "SERVER_FILE",
    "STORE_ENV",
    "Store",
    "check_backend_name",
    "describe",
    "explain_store_error",
    "json_value",
    "open_store",
    "pin_backend",
    "running_server",
    "session",
]


def open_store(home: Path | str, backend: str | None = None) -> Store:
    """The store of ``home`` (created on first use) on ``backend``, or on the backend the
    home was made with when None; close it when done."""
    return _open_backend(home, backend=backend)


@contextmanager
def session(home: Path | str, backend: str | None = None) -> Iterator[Store]:
    """``with session(home) as store:`` opens the store and closes it however the block ends."""
    store = open_store(home, backend)
    try:
        yield store
    finally:
        store.close()


def pin_backend(home: Path | str, backend: str) -> None:
    """Make sure ``home`` is on ``backend`` (recorded in a new home, refused when it was
    made with another), so that code opening it by its path alone opens that backend."""
    open_store(home, backend).close()


def check_backend_name(backend: str) -> str:
    """``backend`` if it names a backend (``duckdb``, ``chdb``, ``clickhouse://...``);
    a clear error otherwise, before anything is opened."""
    parse_backend(backend)
    return backend


def explain_store_error(exc: BaseException, home: Path | str | None) -> ProfilesyncError | None:
    """A full disk, a read-only home or a corrupted store file as the error a person can act
    on (None when ``exc`` is none of these, i.e. a bug)."""
    return store_error(exc, home)
