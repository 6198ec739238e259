"""A segmentation compiled into one sqlglot expression over logical relations.

The compiler writes no SQL text: every node is built with sqlglot (``exp.column``,
``exp.func``, builders parsing fixed fragments), every value a user supplies, property
paths included, is a bound parameter (``$1``, ``$2``, ...: numbered, so a part of the
query can appear twice), and names are identifiers sqlglot quotes. The store renders the
expression in its dialect (:attr:`Reader.dialect`).

The query has two layers. The *base* gives one row per matching event: ``bucket``,
``ev`` (event type), ``grp`` (the group's value), ``uid`` (user, or device for anonymous
events) and ``v`` (the summed value). On top of it, additive metrics are aggregated once
and the groups ranked by their total; unique users, which do not add up, are counted per
bucket and over the whole range in one pass (grouping sets). The top ``limit`` groups
keep their name; the rest are summed up as ``other`` (for unique users by
:func:`others`, a second query run only when there are more groups than shown).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlglot import exp

from profilesync.errors import ConfigurationError
from profilesync.events.validate import STANDARD_FIELDS
from profilesync.query.cohorts import membership
from profilesync.query.model import Filter, PropertyRef, SegmentationQuery
from profilesync.query.relations import EVENTS, Catalog, profile_relation, relation

Bind = Callable[[Any], exp.Expr]


# -- where dialects differ and sqlglot cannot carry the meaning -------------------------
# - json_text: a property of a JSON document as text, NULL when the key is missing or its
#   value is JSON null; a string unquoted, any other value as its JSON text. DuckDB extracts
#   by a JSON path (``$."name"``, a *bound* value sqlglot cannot rewrite); ClickHouse by a
#   key, and its ``JSONExtractString`` gives '' for a missing key, so the value's JSON type
#   decides (``JSONType`` is 'Null' for a missing key and for null);
# - try_cast: sqlglot renders TRY_CAST for ClickHouse as a CAST that fails on bad text,
#   where the query needs NULL (``accurateCastOrNull``);
# - bucket: ``dateTrunc`` gives a Date in ClickHouse for a week or a month, a timestamp
#   for an hour or a day; DuckDB a timestamp for all (a bucket is a timestamp everywhere).
# Everything else (contains, ||, grouping sets) is sqlglot's transpilation.


def _json_path(name: str) -> str:
    return '$."' + name.replace('"', '\\"') + '"'


def _duckdb_json_text(doc: exp.Expr, name: str, bind: Bind) -> exp.Expr:
    return exp.func("json_extract_string", doc, bind(_json_path(name)), dialect="duckdb")


def _clickhouse_json_text(doc: exp.Expr, name: str, bind: Bind) -> exp.Expr:
    key = bind(name)  # numbered: the same $n in all three places

    def call(function: str) -> exp.Expr:
        return exp.Anonymous(this=function, expressions=[doc.copy(), key.copy()])

    json_type = exp.func("toString", call("JSONType"))
    return exp.Case(
        ifs=[
            exp.If(this=json_type.eq(exp.Literal.string("Null")), true=exp.null()),
            exp.If(
                this=json_type.copy().eq(exp.Literal.string("String")),
                true=call("JSONExtractString"),
            ),
        ],
        default=call("JSONExtractRaw"),
    )


def _try_cast(value: exp.Expr, to: exp.DataType) -> exp.Expr:
    return exp.TryCast(this=value, to=to.copy())


def _clickhouse_try_cast(value: exp.Expr, to: exp.DataType) -> exp.Expr:
    plain = to.copy()
    plain.set("nullable", False)
    return exp.func("accurateCastOrNull", value, exp.Literal.string(plain.sql("clickhouse")))


def _bucket(interval: str, time: exp.Expr) -> exp.Expr:
    return exp.func("date_trunc", exp.Literal.string(interval), time, dialect="duckdb")


def _clickhouse_bucket(interval: str, time: exp.Expr) -> exp.Expr:
    return exp.func("toDateTime64", _bucket(interval, time), exp.Literal.number(6))


@dataclass(frozen=True)
class Dialect:
    json_text: Callable[[exp.Expr, str, Bind], exp.Expr]
    try_cast: Callable[[exp.Expr, exp.DataType], exp.Expr]
    bucket: Callable[[str, exp.Expr], exp.Expr]


DIALECTS: dict[str, Dialect] = {
    "duckdb": Dialect(json_text=_duckdb_json_text, try_cast=_try_cast, bucket=_bucket),
    "clickhouse": Dialect(
        json_text=_clickhouse_json_text, try_cast=_clickhouse_try_cast, bucket=_clickhouse_bucket
    ),
}

DOUBLE = exp.DataType.build("DOUBLE")
TEXT = exp.DataType.build("VARCHAR")
TEXT_TYPES = (exp.DataType.Type.TEXT, exp.DataType.Type.VARCHAR, exp.DataType.Type.JSON)


@dataclass
class Params:
    """Values bound to ``$1``, ``$2``, ... in the order they were bound."""

    values: list[Any] = field(default_factory=list)

    def __call__(self, value: Any) -> exp.Expr:
        self.values.append(value)
        return exp.Placeholder(this=str(len(self.values)))


@dataclass
class Compiled:
    """A segmentation as a sqlglot expression over logical relations, with its values."""

    query: SegmentationQuery
    expression: exp.Select
    params: list[Any]
    base: exp.Select  # one row per matching event: bucket, ev, grp, uid, v


@dataclass
class _Value:
    """A property as an expression; ``type`` None means text read from JSON."""

    expr: exp.Expr
    type: exp.DataType | None


class _Properties:
    """Properties as expressions; profile properties add the joins the query needs."""

    def __init__(
        self, catalog: Catalog, bind: Bind, dialect: Dialect, now: datetime | None = None
    ) -> None:
        self.catalog = catalog
        self.bind = bind
        self.dialect = dialect
        self.now = now  # what a cohort's "in the last N days" counts back from
        self.joins: dict[str, str] = {}  # source -> alias

    def value(self, ref: PropertyRef) -> _Value:
        if ref.kind == "cohort":
            raise ConfigurationError(
                f"{ref.label()} is a filter (member or not): group by a property instead"
            )
        if ref.kind == "profile":
            prop = self.catalog.property(ref.name)
            alias = self.joins.setdefault(prop.source, f"p{len(self.joins)}")
            return _Value(exp.column(ref.name, table=alias, quoted=True), prop.type)
        if ref.kind == "field":
            if ref.name not in STANDARD_FIELDS:
                raise ConfigurationError(
                    f"no event field named {ref.name!r}; fields are {', '.join(STANDARD_FIELDS)}"
                )
            return _Value(
                exp.column(ref.name, table="e", quoted=True),
                exp.DataType.build(STANDARD_FIELDS[ref.name]),
            )
        documents = {"event": "event_properties", "user": "user_properties", "group": "groups"}
        document = exp.column(documents[ref.kind], "e")
        return _Value(self.dialect.json_text(document, ref.name, self.bind), None)

    def number(self, ref: PropertyRef) -> exp.Expr:
        value = self.value(ref)
        if _textual(value.type):
            return self.dialect.try_cast(value.expr, DOUBLE)
        return exp.cast(value.expr, DOUBLE)

    def condition(self, f: Filter) -> exp.Expr:
        if f.kind == "cohort":
            return membership(self, f, exp.column("user_id", "e"))
        value = self.value(f)
        expr = value.expr
        if f.op in ("is set", "is not set"):
            return exp.Not(this=expr.is_(exp.null())) if f.op == "is set" else expr.is_(exp.null())
        texts = [_text(v) for v in f.values]
        if f.op in ("contains", "does not contain"):
            text = exp.func("lower", exp.cast(expr.copy(), TEXT))
            found = exp.or_(
                *(exp.func("contains", text.copy(), exp.func("lower", self.bind(t))) for t in texts)
            )
            if f.op == "contains":
                return exp.paren(found)
            return exp.paren(exp.or_(expr.is_(exp.null()), exp.not_(found)))
        if f.op in ("is", "is not"):
            json = value.type is None or value.type.is_type(exp.DataType.Type.JSON)
            target = TEXT if json or value.type is None else value.type
            values = [self.dialect.try_cast(self.bind(t), target) for t in texts]
            if f.op == "is":
                return expr.isin(*values)
            return exp.paren(exp.or_(expr.is_(exp.null()), exp.not_(expr.copy().isin(*values))))
        if len(texts) != 1:
            raise ConfigurationError(f"filter {f.label()} {f.op} takes one value")
        left, to = (
            (self.dialect.try_cast(expr, DOUBLE), DOUBLE)
            if _textual(value.type)
            else (expr, value.type)
        )
        assert to is not None
        return _COMPARE[f.op](this=left, expression=self.dialect.try_cast(self.bind(texts[0]), to))

    def join(self, select: exp.Select) -> exp.Select:
        for source, alias in self.joins.items():
            on = exp.column("user_id", alias).eq(exp.column("user_id", "e"))
            select = select.join(
                profile_relation(source, alias), on=on, join_type="left", copy=False
            )
        return select


_COMPARE: dict[str, type[exp.Binary]] = {"<": exp.LT, "<=": exp.LTE, ">": exp.GT, ">=": exp.GTE}


def _textual(data_type: exp.DataType | None) -> bool:
    return data_type is None or data_type.is_type(*TEXT_TYPES)


def _text(value: Any) -> str:
    """A filter value as the text JSON or a typed cast compares with (``true``, ``5``)."""
    return value if isinstance(value, str) else json.dumps(value)


# -- the segmentation -------------------------------------------------------------------


def compile_segmentation(
    query: SegmentationQuery,
    catalog: Catalog,
    start: datetime,
    end: datetime,
    *,
    project_id: int | None = None,
    dialect: str = "duckdb",
    now: datetime | None = None,
) -> Compiled:
    """The whole segmentation over ``[start, end)`` as one expression with its values
    (``now``: when a cohort filter's "in the last N days" ends; default the clock's)."""
    params = Params()
    base = _base(query, catalog, start, end, project_id, params, DIALECTS[dialect], now)
    expression = (
        _uniques(base, query.limit) if query.metric == "uniques" else _additive(base, query)
    )
    return Compiled(query, expression, params.values, base)


def _base(
    query: SegmentationQuery,
    catalog: Catalog,
    start: datetime,
    end: datetime,
    project_id: int | None,
    bind: Params,
    dialect: Dialect,
    now: datetime | None = None,
) -> exp.Select:
    props = _Properties(catalog, bind, dialect, now)
    time = exp.column("time", "e", quoted=True)
    group = props.value(query.group_by).expr if query.group_by else exp.null()
    value = props.number(query.property) if query.property else exp.null()
    where: list[exp.Expr] = [
        exp.column("event_type", "e").isin(*(bind(ev) for ev in query.events)),
        time.copy() >= bind(start),
        time.copy() < bind(end),
    ]
    if project_id is not None:
        where.append(exp.column("project_id", "e").eq(bind(project_id)))
    where += [props.condition(f) for f in query.filters]
    uid = exp.func(
        "coalesce",
        exp.column("user_id", "e"),
        exp.DPipe(this=exp.Literal.string("device:"), expression=exp.column("device_id", "e")),
    )
    select = exp.select(
        dialect.bucket(query.interval, time).as_("bucket"),
        exp.column("event_type", "e").as_("ev"),
        group.as_("grp"),
        uid.as_("uid"),
        value.as_("v"),
    ).from_(relation(EVENTS, "e"))
    return props.join(select).where(exp.and_(*where), copy=False)


_RANK = {"totals": "sum(n)", "sum": "sum(sv)", "avg": "sum(sv) / nullif(sum(nv), 0)"}


@functools.cache
def _parsed(sql: str, into: type[exp.Expr] | None = None) -> exp.Expr:
    return exp.maybe_parse(sql, into=into, prefix="GROUP BY" if into is exp.Group else None)


def fragments(*sql: str) -> list[exp.Expr]:
    """Fixed fragments of the query (never a user's text), parsed once and copied: the
    expression is built anew for every question, parsing them each time would cost more
    than rendering."""
    return [_parsed(fragment).copy() for fragment in sql]


def _grouping_sets(sql: str) -> exp.Expr:
    return _parsed(sql, exp.Group).copy()


def _columns(*names: str) -> list[exp.Expr]:
    return [exp.column(name) for name in names]


def _additive(base: exp.Select, query: SegmentationQuery) -> exp.Select:
    """Totals, sums and averages add up across groups: aggregate once, rank the groups."""
    limit = exp.Literal.number(query.limit)
    agg = (
        exp.select(
            *_columns("bucket", "ev", "grp"),
            *fragments("count(*) AS n", "count(v) AS nv", "sum(v) AS sv"),
        )
        .from_(base.subquery("b", copy=False), copy=False)
        .group_by(*_columns("bucket", "ev", "grp"), copy=False)
    )
    rank = (
        f"row_number() OVER (ORDER BY {_RANK[query.metric]} DESC NULLS LAST, grp NULLS LAST) AS r"
    )
    ranked = (
        exp.select(exp.column("grp"), *fragments(rank))
        .from_(exp.table_("agg"), copy=False)
        .group_by(exp.column("grp"), copy=False)
    )
    named = exp.column("r", "r") <= limit
    grp = exp.Case(ifs=[exp.If(this=named.copy(), true=exp.column("grp", "a"))])
    return (
        exp.select(
            exp.column("bucket", "a"), exp.column("ev", "a"), grp.as_("grp"), named.as_("named"),
            *fragments("min(r.r) AS r", "sum(a.n) AS n", "sum(a.nv) AS nv", "sum(a.sv) AS sv"),
        )
        .with_("agg", as_=agg, materialized=True, copy=False)
        .with_("ranked", as_=ranked, copy=False)
        .from_(exp.table_("agg", alias="a"), copy=False)
        .join(exp.table_("ranked", alias="r"), on=fragments("a.grp IS NOT DISTINCT FROM r.grp")[0], copy=False)
        .group_by(exp.column("bucket", "a"), exp.column("ev", "a"), grp.copy(), named.copy(), copy=False)
    )  # fmt: skip


def _uniques(base: exp.Select, limit: int) -> exp.Select:
    """Unique users do not add up across buckets or groups: one pass counts them per bucket
    and over the range (grouping sets); the top groups by the range count keep their name."""
    counted = (
        exp.select(*_columns("bucket", "ev", "grp"), *fragments("count(DISTINCT uid) AS n"))
        .from_(base.subquery("b", copy=False), copy=False)
        .group_by(_grouping_sets("GROUPING SETS ((bucket, ev, grp), (ev, grp))"), copy=False)
    )
    ranked = (
        exp.select(
            exp.column("grp"),
            *fragments(
                "row_number() OVER (ORDER BY sum(n) DESC NULLS LAST, grp NULLS LAST) AS r",
                "count(*) OVER () AS groups",
            ),
        )
        .from_(exp.table_("counted"), copy=False)
        .where(exp.column("bucket").is_(exp.null()), copy=False)
        .group_by(exp.column("grp"), copy=False)
    )
    return (
        exp.select(
            *(exp.column(c, "c") for c in ("bucket", "ev", "grp")), *fragments("true AS named"),
            exp.column("r", "r"), exp.column("n", "c"), *fragments("NULL AS nv", "NULL AS sv"),
            exp.column("groups", "r"),
        )
        .with_("counted", as_=counted, materialized=True, copy=False)
        .with_("ranked", as_=ranked, copy=False)
        .from_(exp.table_("counted", alias="c"), copy=False)
        .join(exp.table_("ranked", alias="r"), on=fragments("c.grp IS NOT DISTINCT FROM r.grp")[0], copy=False)
        .where(exp.column("r", "r") <= exp.Literal.number(limit), copy=False)
    )  # fmt: skip


def others(compiled: Compiled, top: list[Any]) -> tuple[exp.Select, list[Any]]:
    """Unique users of the groups outside ``top``, per bucket and over the range; the
    values are the segmentation's followed by the top groups'."""
    params = Params(list(compiled.params))
    grp = exp.column("grp")
    named = [g for g in top if g is not None]
    outside: exp.Expr = (
        exp.not_(grp.copy().isin(*(params(g) for g in named))) if named else exp.true()
    )
    if None in top:
        outside = exp.and_(exp.Not(this=grp.copy().is_(exp.null())), outside)
    else:
        outside = exp.paren(exp.or_(grp.copy().is_(exp.null()), outside))
    select = (
        exp.select(
            *_columns("bucket", "ev"),
            *fragments(
                "NULL AS grp", "false AS named", "NULL AS r", "count(DISTINCT uid) AS n",
                "NULL AS nv", "NULL AS sv",
            ),
        )
        .from_(compiled.base.subquery("b"))
        .where(outside)
        .group_by(_grouping_sets("GROUPING SETS ((bucket, ev), (ev))"))
    )  # fmt: skip
    return select, params.values


def inline(expression: exp.Expr, params: list[Any]) -> exp.Expr:
    """``expression`` with its ``$n`` placeholders replaced by sqlglot literals, for an
    engine or driver without numbered parameters (sqlglot quotes every value)."""
    return exp.replace_placeholders(
        expression.copy(), **{str(i): v for i, v in enumerate(params, 1)}
    )
