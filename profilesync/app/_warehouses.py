"""The warehouse verbs the use cases need, imported from one place."""

from __future__ import annotations

from profilesync.warehouses import (
    describe_kind,
    describe_kinds,
    open_warehouse,
    opened,
    validate_config,
    warehouse_class,
)
from profilesync.warehouses.protocol import Check, Warehouse

__all__ = [
    "Check",
    "Warehouse",
    "describe_kind",
    "describe_kinds",
    "open_warehouse",
    "opened",
    "validate_config",
    "warehouse_class",
]
