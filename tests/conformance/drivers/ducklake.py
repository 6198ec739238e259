"""Conformance driver for DuckLake: a DuckDB-file catalog and Parquet data files in tmp_path.

Every change attaches the lake read-write in a fresh DuckDB connection, commits one
snapshot and detaches (a DuckDB catalog file allows one writer or many readers, and
the sync attaches it read-only). ``replace_table`` is a ``CREATE OR REPLACE TABLE``,
which gives the table a new uuid as a dbt full refresh does; ``expire_history`` expires
every snapshot but the newest and removes the files only they used, as a maintenance
job running ``ducklake_expire_snapshots`` and ``ducklake_cleanup_old_files`` would.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.conformance.drivers.duckdb import OFFLINE, SqlDriver


def extension_file() -> str:
    """The ducklake extension shipped in the ``duckdb-extension-ducklake`` wheel."""
    from profilesync.warehouses.ducklake.warehouse import extension_file as find

    return find("ducklake", "duckdb-extension-ducklake")


class DuckLakeDriver(SqlDriver):
    kind = "ducklake"
    strategy = "cdc"
    supports_query = True
    detects_replace = True
    can_expire = True
    catalog = "lake"

    def __init__(self, root: Path) -> None:
        super().__init__()
        root.mkdir(parents=True, exist_ok=True)
        self.catalog_file = root / "catalog.ducklake"
        self.data_path = root / "data"
        self.extension = extension_file()
        with self.connect():
            pass  # creates the catalog so `connection add` finds it

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        # verifying the extension's signature takes ~0.3 s per DuckDB instance; this test
        # writer opens one per change and loads the file profilesync itself verifies
        con = duckdb.connect(config={**OFFLINE, "allow_unsigned_extensions": True})
        try:
            con.execute(f"LOAD '{self.extension}'")
            con.execute(
                f"ATTACH 'ducklake:{self.catalog_file}' AS lake (DATA_PATH '{self.data_path}/')"
            )
            yield con
        finally:
            con.close()

    def connection_config(self) -> dict[str, Any]:
        return {"catalog": str(self.catalog_file), "data_path": str(self.data_path)}

    def expire_history(self, name: str) -> None:
        with self.connect() as con:
            con.execute("CALL ducklake_expire_snapshots('lake', older_than => now())")
            con.execute("CALL ducklake_cleanup_old_files('lake', cleanup_all => true)")


def make_driver(request: pytest.FixtureRequest, tmp_path: Path) -> DuckLakeDriver:
    return DuckLakeDriver(tmp_path / "lake")
