"""Which store backend a home opens: the one place outside ``profilesync.store`` naming it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from profilesync.errors import ProfilesyncError
from profilesync.model import json_value
from profilesync.store import open_store as _open_backend
from profilesync.store.home import SERVER_FILE, describe, running_server, store_error
from profilesync.store.protocol import Store

__all__ = [
    "SERVER_FILE",
    "Store",
    "describe",
    "explain_store_error",
    "json_value",
    "open_store",
    "running_server",
    "session",
]


def open_store(home: Path | str) -> Store:
    """The store of ``home`` (created on first use); close it when done."""
    return _open_backend(home)


@contextmanager
def session(home: Path | str) -> Iterator[Store]:
    """``with session(home) as store:`` opens the store and closes it however the block ends."""
    store = open_store(home)
    try:
        yield store
    finally:
        store.close()


def explain_store_error(exc: BaseException, home: Path | str | None) -> ProfilesyncError | None:
    """A full disk, a read-only home or a corrupted store file as the error a person can act
    on (None when ``exc`` is none of these, i.e. a bug)."""
    return store_error(exc, home)
