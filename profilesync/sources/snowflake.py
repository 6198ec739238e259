"""Old path of :mod:`profilesync.warehouses.snowflake.warehouse`, kept importable for one release."""

from profilesync.warehouses.snowflake.warehouse import (
    SnowflakeSource,
    SnowflakeWarehouse,
    _der_private_key,
    arrow_type,
    change_ops,
    description_type,
)

__all__ = [
    "SnowflakeSource",
    "SnowflakeWarehouse",
    "_der_private_key",
    "arrow_type",
    "change_ops",
    "description_type",
]
