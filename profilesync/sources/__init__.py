"""Old home of the warehouses, kept importable for one release: use :mod:`profilesync.warehouses`."""

from __future__ import annotations

from profilesync.warehouses import (
    KINDS,
    _Scrubbing,
    config_spec,
    open_warehouse,
    opened,
    scrubbed,
    validate_config,
    warehouse_class,
)
from profilesync.warehouses.protocol import WarehouseSource

open_source = open_warehouse
source_class = warehouse_class

__all__ = [
    "KINDS",
    "WarehouseSource",
    "_Scrubbing",
    "config_spec",
    "open_source",
    "opened",
    "scrubbed",
    "source_class",
    "validate_config",
]
