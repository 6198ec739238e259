"""Moved to :mod:`profilesync.engine` (``sync``, ``checks``, ``locks``); kept for one release."""

from profilesync.engine.checks import failures, resolve_mapping, source_checks, test_mapping
from profilesync.engine.locks import source_lock
from profilesync.engine.sync import Progress, sync
from profilesync.engine.transform import DELETED, transform
from profilesync.faults import fault as _fault
from profilesync.model import json_value, now
from profilesync.store.duckdb import DuckDBStore

__all__ = [
    "DELETED",
    "DuckDBStore",
    "Progress",
    "_fault",
    "failures",
    "json_value",
    "now",
    "resolve_mapping",
    "source_checks",
    "source_lock",
    "sync",
    "test_mapping",
    "transform",
]
