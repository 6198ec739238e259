"""Retention compiled into one sqlglot expression, run, and shaped into cohorts by start.

The plan (see :class:`~profilesync.query.analyses.RetentionQuery` for the definitions):

- ``ev``: start and return events, flagged ``f1`` (start) and ``f2`` (return);
- ``c1``: each user's first start event in the range (``t1``); ``u`` adds the group value
  at that event and ``b``, the number of its UTC day (or Monday-based week) since the epoch;
- ``back``: every return after the start as its offset ``k`` (its own interval's number
  minus ``b``); ``on`` keeps each user's distinct offsets up to N, ``on_or_after`` each
  user's latest offset (capped at N): a user counts for every k up to it;
- rows per group and cohort: users (``k`` = -1) and users per offset, counted in one pass
  (``per``); the overall row, the groups' ranks and the rest past the limit add those up.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlglot import exp

from profilesync.model import json_value
from profilesync.query.analyses import RetentionQuery
from profilesync.query.compiler import fragments
from profilesync.query.flow import (
    DAY_US,
    Context,
    add_group,
    after,
    by_group,
    col,
    entries,
    event_rows,
    overall,
    same_user,
    user,
    with_ctes,
)
from profilesync.query.relations import Catalog, Store, load_catalog, physical
from profilesync.query.results import group_label
from profilesync.query.runner import project_id_of
from profilesync.query.timerange import time_range

EPOCH = datetime(1970, 1, 1)
_DAYS = {"day": 1, "week": 7}


def bucket_number(at: datetime, interval: str) -> int:
    """The UTC day (or Monday-based week) of ``at``, counted from 1970-01-01."""
    day = (at - EPOCH).days
    return day if interval == "day" else (day + 3) // 7  # 1970-01-01 was a Thursday


def bucket_start(number: int, interval: str) -> date:
    days = number if interval == "day" else number * 7 - 3
    return (EPOCH + timedelta(days=days)).date()


def compile_retention(
    query: RetentionQuery,
    catalog: Catalog,
    start: datetime,
    end: datetime,
    *,
    project_id: int | None = None,
    dialect: str = "duckdb",
    now: datetime | None = None,
) -> tuple[exp.Select, list[Any]]:
    """Retention of users starting in ``[start, end)``: the expression and its values.

    Rows: ``grp``, ``named``, ``r`` (0 overall), ``b`` (cohort), ``k`` (-1: the cohort's
    users, else the offset), ``n`` (users)."""
    ctx = Context(catalog, dialect, now)
    n = query.buckets
    upper = end + timedelta(days=_DAYS[query.interval] * (n + 2)) if query.mode == "on" else None
    steps = [query.start_event, query.return_event]
    ev = event_rows(ctx, steps, query.where, query.group_by, start, upper, project_id)
    grouped = query.group_by is not None
    users, needed = add_group(
        ctx,
        exp.select(
            *user("c1", named=True),
            col("t1", "c1").as_("t1"),
            _number(ctx, col("t1", "c1"), query.interval).as_("b"),
        ).from_(exp.table_("c1"), copy=False),
        query.group_by,
    )
    ctes: list[tuple[str, exp.Query]] = [("ev", ev), ("c1", entries(ctx, end)), *needed]
    ctes += [("u", users), ("back", _returns(ctx, query)), ("counted", _counted(query, n))]
    keys = [col("b", "u"), col("k", "u")]
    if not grouped:
        select: exp.Select = overall([exp.func("count", exp.Star()).as_("n")], "counted", keys)
        return with_ctes(select, ctes, dialect), ctx.params.values
    # counts add up: one pass over ``counted`` per group, cohort and offset (``per``), and
    # the overall row, the ranks and the rest past the limit from those few rows
    per = (
        exp.select(col("grp"), col("b"), col("k"), *fragments("count(*) AS n"))
        .from_(exp.table_("counted"), copy=False)
        .group_by(col("grp"), col("b"), col("k"), copy=False)
    )
    ctes += [("per", per), ("ranked", _ranked())]
    total = [exp.func("sum", col("n", "u")).as_("n")]
    select = overall(total, "per", keys)
    grouped_rows = by_group([a.copy() for a in total], "per", query.limit, keys)
    select = exp.union(select, grouped_rows, distinct=False)  # type: ignore[assignment]
    return with_ctes(select, ctes, dialect), ctx.params.values


def _ranked() -> exp.Select:
    """The groups of ``per`` ranked by their users (the cohorts' sizes), most first."""
    users = "sum(CASE WHEN k = -1 THEN n ELSE 0 END)"
    return (
        exp.select(
            col("grp"),
            *fragments(f"row_number() OVER (ORDER BY {users} DESC, grp NULLS LAST) AS r"),
        )
        .from_(exp.table_("per"), copy=False)
        .group_by(col("grp"), copy=False)
    )


def _number(ctx: Context, ts: exp.Expr, interval: str) -> exp.Expr:
    day = ctx.fn.int_div(ts, exp.Literal.number(DAY_US))
    if interval == "day":
        return day
    return ctx.fn.int_div(exp.paren(day + exp.Literal.number(3)), exp.Literal.number(7))


def _returns(ctx: Context, query: RetentionQuery) -> exp.Select:
    """Each return after a user's start, as its offset from the start's interval."""
    offset = _number(ctx, col("ts", "e"), query.interval) - col("b", "s")
    return (
        exp.select(*user("s", named=True), offset.as_("k"))
        .from_(exp.table_("ev", alias="e"), copy=False)
        .join(exp.table_("u", alias="s"), on=same_user("e", "s"), copy=False)
        .where(
            exp.and_(col("f2", "e"), col("ts", "e") >= col("t1", "s"), after("e", col("t1", "s"), "f1")),
            copy=False,
        )
    )  # fmt: skip


def _counted(query: RetentionQuery, n: int) -> exp.Query:
    """One row per user and cohort (``k`` = -1) and per user and offset they count for."""
    top = exp.Literal.number(n)
    if query.mode == "on":
        offsets = (
            exp.select(col("uid"), col("anon"), col("k"))
            .distinct()
            .from_(exp.table_("back"), copy=False)
            .where(col("k") <= top, copy=False)
        )
    else:
        latest = exp.Least(this=exp.func("max", col("k")), expressions=[top])
        offsets = (
            exp.select(col("uid"), col("anon"), latest.as_("k"))
            .from_(exp.table_("back"), copy=False)
            .group_by(col("uid"), col("anon"), copy=False)
        )
    returned = (
        exp.select(col("grp", "u").as_("grp"), col("b", "u").as_("b"), col("k", "o").as_("k"))
        .from_(exp.table_("u"), copy=False)
        .join(offsets.subquery("o"), on=same_user("o", "u"), copy=False)
    )
    cohort = exp.select(col("grp"), col("b"), exp.Literal.number(-1).as_("k")).from_("u")
    return exp.union(cohort, returned, distinct=False)


# -- the answer -------------------------------------------------------------------------


def shape(
    query: RetentionQuery, start: datetime, end: datetime, rows: list[tuple[Any, ...]]
) -> dict[str, Any]:
    """The JSON answer: a row per cohort (its start, users, returned and rates)."""
    first = bucket_number(start, query.interval)
    last = bucket_number(end - timedelta(microseconds=1), query.interval)
    tables: dict[tuple[Any, bool, int], dict[int, dict[int, int]]] = {}
    for grp, named, rank, b, k, n in rows:
        key = (json_value(grp) if named else None, bool(named), int(rank))
        tables.setdefault(key, {}).setdefault(int(b), {})[int(k)] = int(n)

    def cohorts(counts: dict[int, dict[int, int]]) -> list[dict[str, Any]]:
        return [_cohort(query, b, counts.get(b, {})) for b in range(first, last + 1)]

    total = next((v for key, v in tables.items() if key[2] == 0), {})
    answer: dict[str, Any] = {
        "query": query.model_dump(mode="json"),
        "interval": query.interval,
        "mode": query.mode,
        "start": json_value(start),
        "end": json_value(end),
        "cohorts": cohorts(total),
    }
    if query.group_by:
        groups = sorted((k for k in tables if k[2] != 0), key=lambda k: (not k[1], k[2]))
        answer["groups"] = [
            {
                "label": group_label(grp, named),
                "group": grp,
                "other": not named,
                "cohorts": cohorts(tables[(grp, named, rank)]),
            }
            for grp, named, rank in groups
        ]
    return answer


def _cohort(query: RetentionQuery, b: int, counts: dict[int, int]) -> dict[str, Any]:
    users = counts.get(-1, 0)
    per = [counts.get(k, 0) for k in range(query.buckets + 1)]
    if query.mode == "on_or_after":  # a user's latest offset counts for every k up to it
        per = [sum(per[k:]) for k in range(len(per))]
    return {
        "start": bucket_start(b, query.interval).isoformat(),
        "users": users,
        "returned": per,
        "rates": [n / users if users else None for n in per],
    }


def retention(store: Store, query: RetentionQuery, now: datetime | None = None) -> dict[str, Any]:
    """Resolve names, compile for the store's dialect, run and shape."""
    catalog = load_catalog(store)
    start, end = time_range(query.start, query.end, "day", now)
    project_id = project_id_of(store, query.project) if query.project else None
    expression, params = compile_retention(
        query, catalog, start, end, project_id=project_id, dialect=store.dialect, now=now
    )
    rows = store.read(physical(expression, catalog.tables), params)
    return shape(query, start, end, rows)
