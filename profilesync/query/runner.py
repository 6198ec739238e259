"""Segmentation end to end: resolve names against the store, compile, run, shape.

:func:`plan` reads what the query names (profile properties and their types, the
project) and compiles it; :func:`run` executes the plan through any :class:`Reader`
(the store, or a reader that need not hold the store's lock); :func:`shape` turns the
rows into the answer. The pickers' lists (:func:`known`) come from the same relations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlglot import exp

from profilesync.errors import NotFoundError, UiFix
from profilesync.events.validate import STANDARD_FIELDS
from profilesync.model import json_value
from profilesync.query.compiler import Compiled, compile_segmentation, fragments
from profilesync.query.compiler import others as others_query
from profilesync.query.model import SegmentationQuery
from profilesync.query.relations import (
    EVENTS,
    Reader,
    Store,
    Tables,
    load_catalog,
    physical,
    relation,
)
from profilesync.query.results import shape as shape_rows
from profilesync.query.timerange import buckets
from profilesync.query.timerange import time_range as _time_range


@dataclass
class Plan:
    """A compiled segmentation, the physical tables it reads, and what shaping needs."""

    compiled: Compiled
    tables: Tables
    start: datetime
    end: datetime  # exclusive
    buckets: list[datetime] = field(default_factory=list)

    @property
    def query(self) -> SegmentationQuery:
        return self.compiled.query


def time_range(query: SegmentationQuery, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The query's ``[start, end)`` in naive UTC (see :mod:`profilesync.query.timerange`)."""
    return _time_range(query.start, query.end, query.interval, now)


def plan(store: Store, query: SegmentationQuery, now: datetime | None = None) -> Plan:
    """Resolve the query's names against the store and compile it for the store's dialect."""
    catalog = load_catalog(store)
    start, end = time_range(query, now)
    project_id = project_id_of(store, query.project) if query.project else None
    compiled = compile_segmentation(
        query, catalog, start, end, project_id=project_id, dialect=store.dialect
    )
    return Plan(compiled, catalog.tables, start, end, buckets(start, end, query.interval))


def run(reader: Reader, p: Plan) -> list[tuple[Any, ...]]:
    """Execute a plan; for unique users with more groups than shown, count the rest too."""
    compiled = p.compiled
    rows = reader.read(physical(compiled.expression, p.tables), compiled.params)
    if p.query.metric != "uniques":
        return rows
    limit = p.query.limit
    if rows and rows[0][-1] > limit:  # more groups than shown: count the rest
        top = list({r[2]: None for r in rows})
        expression, params = others_query(compiled, top)
        others = reader.read(physical(expression, p.tables), params)
        rows += [(*r[:4], limit + 1, *r[5:], None) for r in others]
    return [r[:-1] for r in rows]


def shape(p: Plan, rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    """The JSON answer of a plan's rows (see :func:`profilesync.query.results.shape`)."""
    return shape_rows(p.query, p.start, p.end, p.buckets, rows)


def segmentation(store: Store, query: SegmentationQuery) -> dict[str, Any]:
    """Plan, run and shape on ``store``."""
    p = plan(store, query)
    return shape(p, run(store, p))


def project_id_of(store: Store, name: str) -> int:
    """The id of the project named ``name``; refused with where to find the names."""
    project = store.events.find_project(name)
    if project is None:
        raise NotFoundError(
            f"no project named {name!r}: see `profilesync events projects list`, "
            "or create it with `profilesync events projects add NAME`",
            ui_fix=UiFix("See the projects, or create one", "/projects"),
        )
    return project.id


def known(store: Store, project: str | None = None) -> dict[str, Any]:
    """What the query pickers offer: event types (with counts) and property names by kind."""
    catalog = load_catalog(store)
    project_id = project_id_of(store, project) if project else None
    types = (
        exp.select(exp.column("event_type"), *fragments("count(*)", 'max("time")'))
        .from_(relation(EVENTS), copy=False)
        .group_by(exp.column("event_type"), copy=False)
        .order_by(exp.Ordered(this=fragments("count(*)")[0], desc=True), "event_type", copy=False)
    )
    params = []
    if project_id is not None:
        types = types.where(exp.column("project_id").eq(exp.Placeholder(this="1")), copy=False)
        params = [project_id]
    names = store.events.catalog(project_id)
    return {
        "event_types": [
            {"name": t, "count": int(n), "last_seen": json_value(last)}
            for t, n, last in store.read(physical(types, catalog.tables), params)
        ],
        "properties": {
            "profile": [
                {"name": p.name, "type": p.type_name, "source": p.source}
                for _, p in sorted(catalog.properties.items())
            ],
            "user": [{"name": n, "event_types": ev} for k, n, ev in names if k == "user"],
            "event": [{"name": n, "event_types": ev} for k, n, ev in names if k == "event"],
            "field": [{"name": n, "type": t} for n, t in STANDARD_FIELDS.items()],
        },
    }
