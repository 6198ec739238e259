"""A saved cohort's members now: how many, a sample, and every id (for export)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from sqlglot import exp

from profilesync.query.analyses import CohortDefinition
from profilesync.query.cohorts import members_query
from profilesync.query.flow import Context
from profilesync.query.relations import Catalog, Store, load_catalog, physical

BATCH = 50_000


def compile_members(
    definition: CohortDefinition, catalog: Catalog, dialect: str, now: datetime | None = None
) -> tuple[exp.Select, list[object]]:
    """The member ids (column ``user_id``) of ``definition`` with its values; refuses
    unknown profile properties."""
    ctx = Context(catalog, dialect, now)
    return members_query(ctx.props, definition), ctx.params.values


def size_and_sample(
    store: Store, definition: CohortDefinition, sample: int = 20, now: datetime | None = None
) -> tuple[int, list[str]]:
    """How many users the cohort holds now, and the first ``sample`` ids in order."""
    catalog = load_catalog(store)
    members, params = compile_members(definition, catalog, store.dialect, now)
    counted = exp.select(exp.func("count", exp.Star())).from_(members.subquery("m"))
    size = int(store.read(physical(counted, catalog.tables), params)[0][0])
    first = (
        exp.select(exp.column("user_id"))
        .from_(members.subquery("m"))
        .order_by(exp.column("user_id"))
        .limit(exp.Literal.number(sample))
    )
    return size, [
        r[0] for r in store.read(physical(first, catalog.tables), params)
    ] if sample else []


def member_ids(
    store: Store, definition: CohortDefinition, now: datetime | None = None
) -> Iterator[str]:
    """Every member id, in order, read in batches of :data:`BATCH`."""
    catalog = load_catalog(store)
    members, params = compile_members(definition, catalog, store.dialect, now)
    last: str | None = None
    while True:
        page = exp.select(exp.column("user_id")).from_(members.subquery("m"))
        values = list(params)
        if last is not None:
            values.append(last)
            page = page.where(exp.column("user_id") > exp.Placeholder(this=str(len(values))))
        page = page.order_by(exp.column("user_id")).limit(exp.Literal.number(BATCH))
        rows = store.read(physical(page, catalog.tables), values)
        yield from (r[0] for r in rows)
        if len(rows) < BATCH:
            return
        last = rows[-1][0]
