"""Old path of :mod:`profilesync.warehouses.protocol`, kept importable for one release."""

from profilesync.warehouses.protocol import (
    DELETE,
    OP,
    ORD,
    UPSERT,
    Changes,
    Check,
    Level,
    Warehouse,
    WarehouseSource,
    change_schema,
    empty_reader,
)
from profilesync.warehouses.rules import expired_error, replaced_error

__all__ = [
    "DELETE",
    "OP",
    "ORD",
    "UPSERT",
    "Changes",
    "Check",
    "Level",
    "Warehouse",
    "WarehouseSource",
    "change_schema",
    "empty_reader",
    "expired_error",
    "replaced_error",
]
