"""A funnel compiled into one sqlglot expression, run, and shaped into steps.

The plan (see :class:`~profilesync.query.analyses.FunnelQuery` for the definitions):

- ``ev``: the events of any step, flagged per step (:func:`~.flow.event_rows`), read
  from the range's start to its end plus the window;
- ``c1``: each user's first step-1 event in the range (``t1``);
- ``c2`` .. ``cn`` (``this``/``strict`` order): a chain, each the user's first event of
  step k after step k-1 and within the window of ``t1`` (a join of the users still in
  the funnel with their events, one aggregate per step); ``strict`` also drops a user
  when an event of another step comes in between. ``any`` order: one aggregate gives the
  first event of every step after ``t1``, and step k's time is the latest of steps 2..k;
- ``u``: one row per user with the group value at step 1 and every step's time;
- per group (the top groups by users at step 1, the rest as ``other``) and overall:
  users at each step and the median time from step 1 to it; the groups are aggregated
  and ranked in one pass, and only a rest past the limit is read again.

ClickHouse's ``windowFunnel`` is not used: the same plan runs on both stores.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlglot import exp

from profilesync.model import json_value
from profilesync.query.analyses import FunnelQuery
from profilesync.query.compiler import fragments
from profilesync.query.flow import (
    MICROS,
    Context,
    add_group,
    after,
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


def compile_funnel(
    query: FunnelQuery,
    catalog: Catalog,
    start: datetime,
    end: datetime,
    *,
    project_id: int | None = None,
    dialect: str = "duckdb",
    now: datetime | None = None,
) -> tuple[exp.Select, list[Any]]:
    """The funnel over users entering in ``[start, end)``: the expression and its values.

    Rows: ``grp``, ``named``, ``r`` (0 for the overall row, else the group's rank), then
    users at steps 1..n, then the median microseconds from step 1 to steps 2..n."""
    ctx = Context(catalog, dialect, now)
    n = len(query.steps)
    window = timedelta(seconds=query.window_seconds)
    ev = event_rows(ctx, query.steps, query.where, query.group_by, start, end + window, project_id)
    w = ctx.bind(query.window_seconds * MICROS)
    ctes: list[tuple[str, exp.Query]] = [("ev", ev), ("c1", entries(ctx, end))]
    if query.order == "any":
        ctes.append(("c", _any_order(n, w)))
        times = _any_times(n)
    else:
        ctes += [
            (f"c{k}", _next_step(k, w, strict=query.order == "strict")) for k in range(2, n + 1)
        ]
        times = [col("t", f"c{k}") for k in range(2, n + 1)]
    users, needed = add_group(ctx, _users(n, times, query.order == "any"), query.group_by)
    ctes += [*needed, ("u", users)]
    aggregates = [exp.func("count", col("t1", "u")).as_("n1")]
    aggregates += [exp.func("count", col(f"t{k}", "u")).as_(f"n{k}") for k in range(2, n + 1)]
    aggregates += [
        ctx.fn.median(col(f"t{k}", "u") - col("t1", "u")).as_(f"m{k}") for k in range(2, n + 1)
    ]
    select: exp.Select = overall(aggregates, "u")
    if query.group_by:
        ctes.append(("per", _per_group(aggregates)))
        named, other = _top_and_other(aggregates, query.limit)
        select = exp.union(select, exp.union(named, other, distinct=False), distinct=False)  # type: ignore[assignment]
    return with_ctes(select, ctes, dialect), ctx.params.values


def _per_group(aggregates: list[exp.Expr]) -> exp.Select:
    """``per``: ``aggregates`` per group, in one pass over ``u``, and the group's rank
    ``r`` by its users (most first)."""
    rank = fragments("row_number() OVER (ORDER BY count(*) DESC, u.grp NULLS LAST) AS r")
    return (
        exp.select(col("grp", "u").as_("grp"), *(a.copy() for a in aggregates), *rank)
        .from_(exp.table_("u", alias="u"), copy=False)
        .group_by(col("grp", "u"), copy=False)
    )


def _top_and_other(aggregates: list[exp.Expr], limit: int) -> tuple[exp.Select, exp.Select]:
    """The top ``limit`` groups of ``per`` as they are, and the rest folded into one row
    (``named`` false) from their users: none, and no second pass, when there is no rest."""
    names = [a.alias_or_name for a in aggregates]
    top = (
        exp.select(col("grp"), *fragments("1 = 1 AS named"), col("r"), *map(col, names))
        .from_(exp.table_("per"), copy=False)
        .where(col("r") <= exp.Literal.number(limit), copy=False)
    )
    rest = (
        exp.select(*fragments("NULL AS grp", "1 = 0 AS named", "min(p.r) AS r"), *(a.copy() for a in aggregates))
        .from_(exp.table_("u", alias="u"), copy=False)
        .join(exp.table_("per", alias="p"), on=fragments("u.grp IS NOT DISTINCT FROM p.grp")[0], copy=False)
        .where(col("r", "p") > exp.Literal.number(limit), copy=False)
    )  # fmt: skip
    other = (
        exp.select(exp.Star())
        .from_(rest.subquery("rest"), copy=False)
        .where(col("n1") > exp.Literal.number(0), copy=False)
    )
    return top, other


def _next_step(k: int, window: exp.Expr, *, strict: bool) -> exp.Select:
    """Users of ``c{k-1}`` with their first step-k event after step k-1 within the window."""
    previous = col("t", "s") if k > 2 else col("t1", "s")
    found = exp.func(
        "min",
        exp.Case(ifs=[exp.If(this=exp.and_(col(f"f{k}", "e"), after("e", previous, f"f{k - 1}")), true=col("ts", "e"))]),
    )  # fmt: skip
    columns = [*user("s", named=True), col("t1", "s").as_("t1"), found.as_("t")]
    if strict:  # the first event of another step after step k-1
        other = exp.and_(exp.not_(col(f"f{k}", "e")), col("ts", "e") > previous.copy())
        columns.append(
            exp.func("min", exp.Case(ifs=[exp.If(this=other, true=col("ts", "e"))])).as_("x")
        )
    within: list[exp.Expr] = [
        col("ts", "e") >= previous.copy(),
        col("ts", "e") <= col("t1", "s") + window.copy(),
    ]
    if not strict:  # only step-k events matter: the join carries no others
        within.insert(0, col(f"f{k}", "e"))
    inner = (
        exp.select(*columns)
        .from_(exp.table_("ev", alias="e"), copy=False)
        .join(exp.table_(f"c{k - 1}", alias="s"), on=same_user("e", "s"), copy=False)
        .where(exp.and_(*within), copy=False)
        .group_by(*user("s"), col("t1", "s"), copy=False)
    )  # fmt: skip
    keep: exp.Expr = exp.Not(this=col("t").is_(exp.null()))
    if strict:
        keep = exp.and_(keep, exp.paren(exp.or_(col("x").is_(exp.null()), col("x") >= col("t"))))
    return (
        exp.select(col("uid"), col("anon"), col("t1"), col("t"))
        .from_(inner.subquery("chain"), copy=False)
        .where(keep, copy=False)
    )


def _any_order(n: int, window: exp.Expr) -> exp.Select:
    """Each user of ``c1`` with the first event of every later step after step 1."""
    firsts = [
        exp.func(
            "min",
            exp.Case(ifs=[exp.If(this=exp.and_(col(f"f{k}", "e"), after("e", col("t1", "s"), "f1")), true=col("ts", "e"))]),
        ).as_(f"a{k}")
        for k in range(2, n + 1)
    ]  # fmt: skip
    return (
        exp.select(*user("s", named=True), *firsts)
        .from_(exp.table_("ev", alias="e"), copy=False)
        .join(exp.table_("c1", alias="s"), on=same_user("e", "s"), copy=False)
        .where(exp.and_(col("ts", "e") >= col("t1", "s"), col("ts", "e") <= col("t1", "s") + window.copy()), copy=False)
        .group_by(*user("s"), copy=False)
    )  # fmt: skip


def _any_times(n: int) -> list[exp.Expr]:
    """Step k's time in any order: the latest of steps 2..k, once all of them happened."""
    times: list[exp.Expr] = [col("a2", "c")]
    for k in range(3, n + 1):
        both = exp.and_(
            exp.Not(this=times[-1].copy().is_(exp.null())),
            exp.Not(this=col(f"a{k}", "c").is_(exp.null())),
        )
        latest = exp.Greatest(this=times[-1].copy(), expressions=[col(f"a{k}", "c")])
        times.append(exp.Case(ifs=[exp.If(this=both, true=latest)]))
    return times


def _users(n: int, times: list[exp.Expr], any_order: bool) -> exp.Select:
    """One row per user who entered: ``t1`` and every later step's time."""
    select = exp.select(
        *user("c1", named=True),
        col("t1", "c1").as_("t1"),
        *(t.as_(f"t{k}") for k, t in enumerate(times, 2)),
    ).from_(exp.table_("c1"), copy=False)
    joined = ["c"] if any_order else [f"c{k}" for k in range(2, n + 1)]
    for name in joined:
        select = select.join(
            exp.table_(name), on=same_user(name, "c1"), join_type="left", copy=False
        )
    return select


# -- the answer -------------------------------------------------------------------------


def shape(
    query: FunnelQuery, start: datetime, end: datetime, rows: list[tuple[Any, ...]]
) -> dict[str, Any]:
    """The JSON answer: the steps overall and, when grouped, per group (largest first)."""
    n = len(query.steps)
    names = [s.event_type for s in query.steps]
    total = next((r for r in rows if r[2] == 0), None)
    answer: dict[str, Any] = {
        "query": query.model_dump(mode="json"),
        "window": query.window,
        "order": query.order,
        "start": json_value(start),
        "end": json_value(end),
        "steps": _steps(names, total[3:] if total else (0,) * n + (None,) * (n - 1)),
    }
    if query.group_by:
        groups = sorted((r for r in rows if r[2] != 0), key=lambda r: (not r[1], r[2]))
        answer["groups"] = [
            {
                "label": group_label(r[0], r[1]),
                "group": json_value(r[0]) if r[1] else None,
                "other": not r[1],
                "steps": _steps(names, r[3:]),
            }
            for r in groups
        ]
    return answer


def _steps(names: list[str], values: tuple[Any, ...] | list[Any]) -> list[dict[str, Any]]:
    n = len(names)
    users = [int(v or 0) for v in values[:n]]
    medians = [None, *values[n:]]
    steps = []
    for k, name in enumerate(names):
        previous = users[k - 1] if k else users[0]
        steps.append(
            {
                "event_type": name,
                "users": users[k],
                "conversion": users[k] / users[0] if users[0] else None,
                "step_conversion": users[k] / previous if previous else None,
                "drop_off": previous - users[k],
                "median_seconds_to_convert": (
                    None if medians[k] is None else float(medians[k]) / MICROS
                ),
            }
        )
    return steps


def funnel(store: Store, query: FunnelQuery, now: datetime | None = None) -> dict[str, Any]:
    """Resolve names, compile for the store's dialect, run and shape (``now``: today's
    date for a range without an end, and the clock of cohort filters)."""
    catalog = load_catalog(store)
    start, end = time_range(query.start, query.end, "day", now)
    project_id = project_id_of(store, query.project) if query.project else None
    expression, params = compile_funnel(
        query, catalog, start, end, project_id=project_id, dialect=store.dialect, now=now
    )
    rows = store.read(physical(expression, catalog.tables), params)
    return shape(query, start, end, rows)
