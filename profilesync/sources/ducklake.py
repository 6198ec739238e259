"""Old path of :mod:`profilesync.warehouses.ducklake.warehouse`, kept importable for one release."""

from profilesync.warehouses.ducklake.warehouse import (
    DuckLakeSource,
    DuckLakeWarehouse,
    extension_file,
)

__all__ = [
    "DuckLakeSource",
    "DuckLakeWarehouse",
    "extension_file",
]
