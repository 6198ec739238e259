"""Old path of :mod:`profilesync.warehouses.delta.warehouse`, kept importable for one release."""

from profilesync.warehouses.delta.warehouse import (
    DeltaSource,
    DeltaWarehouse,
)

__all__ = [
    "DeltaSource",
    "DeltaWarehouse",
]
