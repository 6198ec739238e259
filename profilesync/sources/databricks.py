"""Old path of :mod:`profilesync.warehouses.databricks.warehouse`, kept importable for one release."""

from profilesync.warehouses.databricks.warehouse import (
    DatabricksSource,
    DatabricksWarehouse,
    arrow_type,
    change_ops,
    description_type,
)

__all__ = [
    "DatabricksSource",
    "DatabricksWarehouse",
    "arrow_type",
    "change_ops",
    "description_type",
]
