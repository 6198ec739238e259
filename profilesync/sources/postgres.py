"""Old path of :mod:`profilesync.warehouses.postgres`, kept importable for one release."""

from profilesync.warehouses.postgres.catalog import user_id_columns
from profilesync.warehouses.postgres.checks import wal_level_check as _wal_level_check
from profilesync.warehouses.postgres.driver import duck as _duck
from profilesync.warehouses.postgres.slot import PLUGIN, SLOT_PREFIX, lsn_int, lsn_text, slot_name
from profilesync.warehouses.postgres.warehouse import PostgresSource, PostgresWarehouse

__all__ = [
    "PLUGIN",
    "SLOT_PREFIX",
    "PostgresSource",
    "PostgresWarehouse",
    "_duck",
    "_wal_level_check",
    "lsn_int",
    "lsn_text",
    "slot_name",
    "user_id_columns",
]
