"""The profile store: :mod:`.protocol` says what a store does, :mod:`.duckdb` is the
embedded one. Open a store without naming the backend::

    from profilesync.store import open_store

    with open_store(".profilesync") as store:
        print(store.usage())
"""

from __future__ import annotations

from pathlib import Path

from profilesync.errors import ConfigurationError
from profilesync.store.duckdb import STORE_FILE, DuckDBStore
from profilesync.store.protocol import Capabilities, Store

__all__ = ["BACKENDS", "STORE_FILE", "Capabilities", "DuckDBStore", "Store", "open_store"]

#: the backends a store can be opened with; the first is the default
BACKENDS = ("duckdb",)


def open_store(home: Path | str, *, backend: str = "duckdb", wait_seconds: float = 10.0) -> Store:
    """Open the store kept in ``home`` (created on first use) with ``backend``."""
    if backend not in BACKENDS:
        raise ConfigurationError(
            f"unknown store backend {backend!r}: choose one of {', '.join(BACKENDS)}"
        )
    return DuckDBStore(home, wait_seconds=wait_seconds)
