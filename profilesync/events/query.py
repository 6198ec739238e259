"""Moved to :mod:`profilesync.query`; this import path stays for one release.

The functions here keep their old signatures: ``run`` and ``segmentation`` still take a
DuckDB connection or cursor (it runs the compiled query rendered in DuckDB's dialect),
and each makes sure the events tables exist before the first question, as before.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb
from sqlglot import exp

from profilesync.errors import ConfigurationError
from profilesync.events.store import ensure_schema
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
from profilesync.query.relations import Reader
from profilesync.query.runner import Plan, shape, time_range
from profilesync.store.duckdb import DuckDBStore

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


class _Cursor:
    """A DuckDB connection or cursor as a :class:`Reader`."""

    dialect = "duckdb"

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def read(self, query: exp.Expression, params: Any = ()) -> list[tuple[Any, ...]]:
        return self.con.execute(query.sql(dialect=self.dialect), list(params)).fetchall()


def _reader(con: duckdb.DuckDBPyConnection | Reader) -> Reader:
    return _Cursor(con) if isinstance(con, duckdb.DuckDBPyConnection) else con


def plan(store: DuckDBStore, query: SegmentationQuery, now: datetime | None = None) -> Plan:
    ensure_schema(store)
    return _runner.plan(store, query, now)


def run(con: duckdb.DuckDBPyConnection | Reader, p: Plan) -> list[tuple[Any, ...]]:
    """Execute a plan on ``con`` (a cursor of the store's database, or the store)."""
    try:
        return _runner.run(_reader(con), p)
    except duckdb.CatalogException as exc:
        raise ConfigurationError(
            f"a profile table changed while the query ran ({exc}); run the query again"
        ) from exc


def segmentation(
    store: DuckDBStore, query: SegmentationQuery, con: duckdb.DuckDBPyConnection | None = None
) -> dict[str, Any]:
    """Plan on ``store``, run on ``con`` (default the store), shape the answer."""
    p = plan(store, query)
    return shape(p, run(con if con is not None else store, p))


def known(store: DuckDBStore, project: str | None = None) -> dict[str, Any]:
    ensure_schema(store)
    return _runner.known(store, project)


def user_lookup(
    store: DuckDBStore, user_id: str, limit: int = 50, con: duckdb.DuckDBPyConnection | None = None
) -> dict[str, Any]:
    ensure_schema(store)
    if con is None:
        return _lookup.user_lookup(store, user_id, limit)
    return _lookup.user_lookup(_OnCursor(store, con), user_id, limit)


class _OnCursor(_Cursor):
    """The store's profiles, with event reads on another cursor."""

    def __init__(self, store: DuckDBStore, con: duckdb.DuckDBPyConnection) -> None:
        super().__init__(con)
        self.store = store

    def profile_tables(self) -> Any:
        return self.store.profile_tables()

    def get_profile(self, user_id: str, *, detail: bool = False) -> dict[str, Any]:
        return self.store.get_profile(user_id, detail=detail)
