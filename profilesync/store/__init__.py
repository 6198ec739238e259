"""The profile store: :mod:`.protocol` says what a store does, :mod:`.duckdb` is the
embedded one, :mod:`.clickhouse` keeps profiles and events in ClickHouse (``chdb`` in this
process with its data under the home, or a server). :mod:`.backends` names them and
records which one a home was made with. Open a store without naming the backend::

    from profilesync.store import open_store

    with open_store(".profilesync") as store:
        print(store.usage())
"""

from __future__ import annotations

from pathlib import Path

from profilesync.store.backends import (
    CHOICES,
    STORE_ENV,
    Backend,
    choose_backend,
    parse_backend,
    record_backend,
)
from profilesync.store.duckdb import STORE_FILE, DuckDBStore
from profilesync.store.protocol import Capabilities, Store

__all__ = [
    "BACKENDS",
    "CHOICES",
    "STORE_ENV",
    "STORE_FILE",
    "Backend",
    "Capabilities",
    "DuckDBStore",
    "Store",
    "open_store",
    "parse_backend",
]

#: the backends a store can be opened with (besides ``clickhouse://`` URLs); the first is
#: the default
BACKENDS = ("duckdb", "chdb")


def open_store(
    home: Path | str, *, backend: str | Backend | None = None, wait_seconds: float = 10.0
) -> Store:
    """Open the store kept in ``home`` (created on first use). ``backend`` (``duckdb``,
    ``chdb`` or a ``clickhouse://`` URL) is needed only when the home is made: it records
    its backend, opens it when none is named, and refuses another one."""
    wanted = parse_backend(backend) if isinstance(backend, str) else backend
    catalog = DuckDBStore(home, wait_seconds=wait_seconds, check_backend=False)
    try:
        chosen = choose_backend(catalog, catalog.home, wanted)
        if chosen.kind == "duckdb":
            record_backend(catalog, catalog.home, chosen)
            return catalog
        from profilesync.store.clickhouse import ClickHouseStore

        return ClickHouseStore(catalog.home, backend=chosen, catalog=catalog)
    except BaseException:
        catalog.close()
        raise
