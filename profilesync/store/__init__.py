"""The profile store: :mod:`.protocol` says what a store does, :mod:`.duckdb` is the
embedded one, :mod:`.clickhouse` keeps profiles and events in ClickHouse (``chdb``: in
this process, data under the home). Open a store without naming the backend::

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
BACKENDS = ("duckdb", "chdb")


def open_store(home: Path | str, *, backend: str = "duckdb", wait_seconds: float = 10.0) -> Store:
    """Open the store kept in ``home`` (created on first use) with ``backend``; a home
    keeps the backend it was created with, another one is refused."""
    if backend not in BACKENDS:
        raise ConfigurationError(
            f"unknown store backend {backend!r}: choose one of {', '.join(BACKENDS)}"
        )
    from profilesync.store.clickhouse import ClickHouseStore, check_backend

    if backend == "chdb":
        return ClickHouseStore(home, wait_seconds=wait_seconds)
    store = DuckDBStore(home, wait_seconds=wait_seconds)
    try:
        check_backend(store, store.home, backend, record=False)  # the default: nothing noted
    except BaseException:
        store.close()
        raise
    return store
