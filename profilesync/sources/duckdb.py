"""Old path of :mod:`profilesync.warehouses.duckdb.warehouse`, kept importable for one release."""

from profilesync.warehouses.duckdb.warehouse import (
    DuckDBSource,
    DuckDBWarehouse,
    arrow_reader,
    extension_file,
    load,
    offline_connect,
    query_sql,
    quiet,
    split_table,
    user_query,
)

__all__ = [
    "DuckDBSource",
    "DuckDBWarehouse",
    "arrow_reader",
    "extension_file",
    "load",
    "offline_connect",
    "query_sql",
    "quiet",
    "split_table",
    "user_query",
]
