"""Moved to :mod:`profilesync.query`; this import path stays for one release.

The functions here keep their old signatures: ``run`` and ``segmentation`` still take a
DuckDB connection or cursor (the compiled query is rendered in DuckDB's dialect for it),
and a profile table dropped while a query runs is still reported as a configuration error.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb

from profilesync.query import lookup as _lookup
from profilesync.query import runner as _runner
from profilesync.query.model import (
    KINDS,
    NONE_LABEL,
    OPS,
    OTHER_LABEL,
    Filter,
    Interval,
    Kind,
    Metric,
    Op,
    PropertyRef,
    SegmentationQuery,
)
from profilesync.query.runner import Plan, known, shape, time_range
from profilesync.store.duckdb import CursorReader
from profilesync.store.protocol import Reader, Store

__all__ = [
    "KINDS",
    "NONE_LABEL",
    "OPS",
    "OTHER_LABEL",
    "Filter",
    "Interval",
    "Kind",
    "Metric",
    "Op",
    "Plan",
    "PropertyRef",
    "SegmentationQuery",
    "known",
    "plan",
    "run",
    "segmentation",
    "shape",
    "time_range",
    "user_lookup",
]


def plan(store: Store, query: SegmentationQuery, now: datetime | None = None) -> Plan:
    return _runner.plan(store, query, now)


def run(con: duckdb.DuckDBPyConnection | Reader, p: Plan) -> list[tuple[Any, ...]]:
    """Execute a plan on ``con`` (a cursor of the store's database, or any reader)."""
    # the store's own reader: a relation dropped meanwhile is a clear error to retry
    reader = CursorReader(con) if isinstance(con, duckdb.DuckDBPyConnection) else con
    return _runner.run(reader, p)


def segmentation(
    store: Store, query: SegmentationQuery, con: duckdb.DuckDBPyConnection | None = None
) -> dict[str, Any]:
    """Plan on ``store``, run on ``con`` (default the store), shape the answer."""
    p = plan(store, query)
    return shape(p, run(con if con is not None else store, p))


def user_lookup(
    store: Store, user_id: str, limit: int = 50, con: duckdb.DuckDBPyConnection | None = None
) -> dict[str, Any]:
    """A user's profile and latest events; ``con`` is accepted for old callers and unused
    (the reads are two short ones on the store)."""
    return _lookup.user_lookup(store, user_id, limit)
