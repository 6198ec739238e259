"""What funnels and retention share: the events they read, per user, in one dialect.

Both analyses start from :func:`event_rows`: one row per event that matches any of the
analysis's events, with the user as two columns, ``uid`` and ``anon`` (the ``user_id``, or
for an anonymous event the ``device_id`` and true: a device is never taken for a user whose
id reads the same), ``ts`` (microseconds since the epoch: exact integer arithmetic on every
engine), one boolean flag per step (``f1``, ``f2``, ...: the event matches that step) and
``grp`` (the group-by value at that event). The pair keeps the columns' own values, where a
computed string (``'device:' || device_id``) would cost DuckDB its compact grouping on
short ids. A ``profile:`` group is the same at every event of a user (the current value;
none for a device), so it is not joined to every event: :func:`group_values` joins the
profiles to the users at step 1 only.
Profile properties and cohorts come through the segmentation compiler's property
resolution (:class:`profilesync.query.compiler._Properties`), so a filter means the same
everywhere.

Where DuckDB and ClickHouse differ beyond what sqlglot carries, :class:`Functions` holds
the two renderings (epoch microseconds, integer division, exact median).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlglot import exp

from profilesync.query.analyses import Step
from profilesync.query.compiler import DIALECTS, Params, _Properties, fragments
from profilesync.query.model import Filter, PropertyRef
from profilesync.query.relations import EVENTS, Catalog, profile_relation, relation

MICROS = 1_000_000
DAY_US = 86_400 * MICROS


def _duckdb_median(value: exp.Expr) -> exp.Expr:
    return exp.func("median", value, dialect="duckdb")


def _clickhouse_median(value: exp.Expr) -> exp.Expr:
    # ``median`` is approximate in ClickHouse; this one is exact and, like DuckDB's,
    # the mean of the two middle values for an even count
    return exp.ParameterizedAgg(
        this="quantileExactInclusive", expressions=[exp.Literal.number(0.5)], params=[value]
    )


@dataclass(frozen=True)
class Functions:
    epoch_us: Callable[[exp.Expr], exp.Expr]
    int_div: Callable[[exp.Expr, exp.Expr], exp.Expr]
    median: Callable[[exp.Expr], exp.Expr]


FUNCTIONS: dict[str, Functions] = {
    "duckdb": Functions(
        epoch_us=lambda t: exp.func("epoch_us", t, dialect="duckdb"),
        int_div=lambda a, b: exp.IntDiv(this=a, expression=b),
        median=_duckdb_median,
    ),
    "clickhouse": Functions(
        epoch_us=lambda t: exp.Anonymous(this="toUnixTimestamp64Micro", expressions=[t]),
        int_div=lambda a, b: exp.Anonymous(this="intDiv", expressions=[a, b]),
        median=_clickhouse_median,
    ),
}


@dataclass
class Context:
    """One analysis being compiled: names, bound values and the dialect's renderings."""

    catalog: Catalog
    dialect: str
    now: datetime | None = None
    params: Params = field(default_factory=Params)

    def __post_init__(self) -> None:
        self.props = _Properties(self.catalog, self.params, DIALECTS[self.dialect], self.clock)
        self.fn = FUNCTIONS[self.dialect]

    @property
    def clock(self) -> datetime:
        return self.now or datetime.now(UTC).replace(tzinfo=None)

    def bind(self, value: Any) -> exp.Expr:
        return self.params(value)


def col(name: str, table: str | None = None) -> exp.Column:
    return exp.column(name, table)


def event_rows(
    ctx: Context,
    steps: Sequence[Step],
    where: Sequence[Filter],
    group_by: PropertyRef | None,
    lower: datetime,
    upper: datetime | None,
    project_id: int | None,
) -> exp.Query:
    """Events matching any step in ``[lower, upper)``, flagged per step (see module doc).

    One scan per event type of the steps, put together with UNION ALL: an equality on
    ``event_type`` is what both engines push into their scans (DuckDB compares it once
    per dictionary entry, ClickHouse reads only that type's range of its sort key), where
    a disjunction of types is evaluated row by row; and within a scan each step's flag is
    known (true, false, or the step's own filters)."""
    props = ctx.props
    time = exp.column("time", "e", quoted=True)
    uid = exp.func("coalesce", col("user_id", "e"), col("device_id", "e"))
    anon = col("user_id", "e").is_(exp.null())
    per_user = per_user_group(group_by)
    group = props.value(group_by).expr if group_by and not per_user else exp.null()
    conditions: list[exp.Expr] = [time >= ctx.bind(lower)]
    if upper is not None:
        conditions.append(time.copy() < ctx.bind(upper))
    if project_id is not None:
        conditions.append(col("project_id", "e").eq(ctx.bind(project_id)))
    conditions += [props.condition(f) for f in where]
    scans = []
    for kind in dict.fromkeys(step.event_type for step in steps):
        flags = [_flag(ctx, step, kind) for step in steps]
        select = exp.select(
            uid.copy().as_("uid"),
            anon.copy().as_("anon"),
            ctx.fn.epoch_us(time.copy()).as_("ts"),
            *(flag.as_(f"f{i}") for i, flag in enumerate(flags, 1)),
            group.copy().as_("grp"),
        ).from_(relation(EVENTS, "e"))
        is_kind = col("event_type", "e").eq(ctx.bind(kind))
        where_all = exp.and_(is_kind, *(c.copy() for c in conditions))
        scans.append(props.join(select).where(where_all, copy=False))
    union: exp.Query = scans[0]
    for scan in scans[1:]:
        union = exp.union(union, scan, distinct=False)
    return union


def per_user_group(group_by: PropertyRef | None) -> bool:
    """The group is a profile property, looked up per user (see the module doc)."""
    return group_by is not None and group_by.kind == "profile"


def entries(ctx: Context, end: datetime) -> exp.Select:
    """``c1``: each user's first step-1 event before ``end`` (``t1``)."""
    end_us = ctx.bind(int((end - datetime(1970, 1, 1)).total_seconds()) * MICROS)
    return (
        exp.select(*user("ev", named=True), exp.func("min", col("ts")).as_("t1"))
        .from_(exp.table_("ev"), copy=False)
        .where(exp.and_(col("f1"), col("ts") < end_us), copy=False)
        .group_by(*user("ev"), copy=False)
    )


def user(table: str, *, named: bool = False) -> list[exp.Expr]:
    """The columns that name a user (see the module doc); ``named``: as ``uid`` and
    ``anon``, for a select list (ClickHouse would keep a join's table prefix)."""
    columns = [col("uid", table), col("anon", table)]
    return [c.as_(c.name) for c in columns] if named else list(columns)


def same_user(a: str, b: str) -> exp.Expr:
    """Rows of ``a`` and ``b`` are of the same user."""
    return exp.and_(col("uid", a).eq(col("uid", b)), col("anon", a).eq(col("anon", b)))


def add_group(
    ctx: Context, users: exp.Select, group_by: PropertyRef | None
) -> tuple[exp.Select, list[tuple[str, exp.Query]]]:
    """``users`` (a select from ``c1``) with ``grp``, each entered user's group value at
    their first step-1 event, and the relations that needs. A profile property is the
    user's current value (a device has no profile), joined here, in the same pass;
    anything else is :func:`first_value` of the events (``g``)."""
    if group_by is None:
        return users.select(exp.null().as_("grp"), copy=False), []
    if not per_user_group(group_by):
        users = users.select(col("grp", "g").as_("grp"), copy=False).join(
            exp.table_("g"), on=same_user("g", "c1"), join_type="left", copy=False
        )
        return users, [("g", first_value("c1", "ev", "f1"))]
    prop = ctx.catalog.property(group_by.name)
    value = exp.column(group_by.name, "p", quoted=True)
    known = exp.Case(ifs=[exp.If(this=exp.not_(col("anon", "c1")), true=value)])
    users = users.select(known.as_("grp"), copy=False).join(
        profile_relation(prop.source, "p"),
        on=col("user_id", "p").eq(col("uid", "c1")),
        join_type="left",
        copy=False,
    )
    return users, []


def _flag(ctx: Context, step: Step, kind: str) -> exp.Expr:
    """Whether an event of type ``kind`` matches ``step`` (a boolean on both engines)."""
    if step.event_type != kind:
        matches: exp.Expr = exp.false()
    elif not step.filters:
        matches = exp.true()
    else:
        matches = exp.and_(*(ctx.props.condition(f) for f in step.filters))
    return exp.cast(matches, exp.DataType.build("BOOLEAN"))


def after(e: str, ts: exp.Expr, previous_flag: str) -> exp.Expr:
    """Event ``e`` is after the moment ``ts`` of a match of ``previous_flag``: later, or
    at the same moment and not itself a match of that step."""
    return exp.paren(exp.or_(col("ts", e) > ts, exp.not_(col(previous_flag, e))))


def first_value(users: str, events: str, flag: str) -> exp.Select:
    """The group value of each user's first event: the smallest among the matches of
    ``flag`` at the user's first moment ``t1`` (one row per user of ``users``)."""
    on = exp.and_(same_user("e", "s"), col("ts", "e").eq(col("t1", "s")))
    return (
        exp.select(*user("s", named=True), *fragments("min(e.grp) AS grp"))
        .from_(exp.table_(events, alias="e"), copy=False)
        .join(exp.table_(users, alias="s"), on=on, copy=False)
        .where(col(flag, "e"), copy=False)
        .group_by(*user("s"), copy=False)
    )


def ranked_groups(users: str) -> exp.Select:
    """Groups of ``users`` (a relation with ``grp``) ranked by their users, most first."""
    return (
        exp.select(
            col("grp"),
            *fragments("row_number() OVER (ORDER BY count(*) DESC, grp NULLS LAST) AS r"),
        )
        .from_(exp.table_(users), copy=False)
        .group_by(col("grp"), copy=False)
    )


def by_group(
    aggregates: Sequence[exp.Expr], users: str, limit: int, keys: Sequence[exp.Expr] = ()
) -> exp.Select:
    """``aggregates`` over ``users`` (AS ``u``) per group: the top ``limit`` groups of
    ``ranked`` by name, the rest together (``named`` false); columns ``grp``, ``named``,
    ``r``, then ``keys``, then the aggregates."""
    named = col("r", "r") <= exp.Literal.number(limit)
    grp = exp.Case(ifs=[exp.If(this=named.copy(), true=col("grp", "u"))])
    return (
        exp.select(grp.as_("grp"), named.as_("named"), *fragments("min(r.r) AS r"), *keys, *aggregates)
        .from_(exp.table_(users, alias="u"), copy=False)
        .join(exp.table_("ranked", alias="r"), on=fragments("u.grp IS NOT DISTINCT FROM r.grp")[0], copy=False)
        .group_by(grp.copy(), named.copy(), *(k.copy() for k in keys), copy=False)
    )  # fmt: skip


def with_ctes(
    select: exp.Select, ctes: Sequence[tuple[str, exp.Query]], dialect: str
) -> exp.Select:
    """``select`` with ``ctes`` (in order); each read more than once is MATERIALIZED, so it
    is computed once on both engines (ClickHouse would run it again at every reference).
    On DuckDB the events (``ev``) are not: each reader scans them again with its own
    filter pushed into the scan, and the columns keep their statistics, which let DuckDB
    group and join short ids as integers (a materialized relation has none)."""
    reads: dict[str, int] = {}
    for node in [select, *(cte for _, cte in ctes)]:
        for table in node.find_all(exp.Table):
            if not table.db:
                reads[table.name] = reads.get(table.name, 0) + 1
    for name, cte in ctes:
        again: bool | None = reads.get(name, 0) > 1 or None  # None: no keyword
        if name == "ev" and dialect == "duckdb":
            again = False  # NOT MATERIALIZED
        select = select.with_(name, as_=cte, materialized=again, copy=False)
    return select


def overall(
    aggregates: Sequence[exp.Expr], users: str, keys: Sequence[exp.Expr] = ()
) -> exp.Select:
    """``aggregates`` over every user of ``users`` (AS ``u``), marked ``r`` = 0."""
    select = exp.select(
        *fragments("NULL AS grp", "1 = 1 AS named", "0 AS r"), *keys, *aggregates
    ).from_(exp.table_(users, alias="u"), copy=False)
    return select.group_by(*(k.copy() for k in keys), copy=False) if keys else select
