"""Old path of :mod:`profilesync.warehouses.sqlwarehouse`, kept importable for one release."""

from profilesync.warehouses.sqlwarehouse import (
    SQLWarehouse,
    SQLWarehouseSource,
    as_map,
)

__all__ = [
    "SQLWarehouse",
    "SQLWarehouseSource",
    "as_map",
]
