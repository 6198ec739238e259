"""Old path of :mod:`profilesync.warehouses.delta.rules`, kept importable for one release."""

from profilesync.warehouses.delta.rules import (
    change_ops,
    interval_seconds,
    retention_checks,
)

__all__ = [
    "change_ops",
    "interval_seconds",
    "retention_checks",
]
