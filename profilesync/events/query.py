"""Questions about events, answered with the profiles as they are now.

A segmentation counts events (or unique users, or sums a numeric event property) per
time bucket for some event types, filtered and grouped by properties of four kinds:

- ``profile``: the user's *current* synced value, for every event, past ones included
  (events are joined to the per-source profile tables at query time);
- ``user``: the ``user_properties`` sent with the event (the value at event time);
- ``event``: the event's ``event_properties``;
- ``field``: a standard top-level field of the event (``platform``, ``country``, ...).

The SQL is generated from a validated :class:`SegmentationQuery`: identifiers are quoted
with :func:`profilesync.mapping.quote` and every value, property path included, is a bound
parameter. The top ``limit`` groups by the metric over the whole range keep their name;
the rest are summed up as ``other``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

import duckdb
from pydantic import BaseModel, Field, field_validator, model_validator

from profilesync.errors import ConfigurationError, NotFoundError
from profilesync.events.lookup import user_lookup as user_lookup  # callers use q.user_lookup
from profilesync.events.store import STANDARD_FIELDS, ensure_schema, get_project
from profilesync.events.timerange import buckets
from profilesync.events.timerange import time_range as _time_range
from profilesync.mapping import quote
from profilesync.store.duckdb import DuckDBStore, json_value

Kind = Literal["profile", "user", "event", "field"]
Metric = Literal["totals", "uniques", "sum", "avg"]
Interval = Literal["hour", "day", "week", "month"]
Op = Literal[
    "is", "is not", "contains", "does not contain", "<", "<=", ">", ">=", "is set", "is not set"
]
KINDS: tuple[str, ...] = ("profile", "user", "event", "field")
OPS: tuple[str, ...] = Op.__args__  # type: ignore[attr-defined]
NONE_LABEL = "(none)"
OTHER_LABEL = "other"


class PropertyRef(BaseModel):
    """A property to filter or group by: its kind and name."""

    kind: Kind = Field(
        description="profile (current synced value), user (at event time), event, field"
    )
    name: str = Field(min_length=1)

    @classmethod
    def parse(cls, text: str, profile_names: set[str] | None = None) -> PropertyRef:
        """``"profile:Plan"``; a bare name is a profile property if one has that name, else an event property."""
        kind, sep, name = text.partition(":")
        if sep and kind in KINDS:
            return cls(kind=kind, name=name)  # type: ignore[arg-type]
        guess = "profile" if profile_names and text in profile_names else "event"
        return cls(kind=guess, name=text)  # type: ignore[arg-type]

    def label(self) -> str:
        return f"{self.kind}:{self.name}"


class Filter(PropertyRef):
    """``kind:name op values``; ``is`` with several values means any of them."""

    op: Op = "is"
    values: list[str | int | float | bool] = Field(default_factory=list)

    @model_validator(mode="after")
    def _values_needed(self) -> Filter:
        if self.op not in ("is set", "is not set") and not self.values:
            raise ValueError(f"filter on {self.label()} with {self.op!r} needs a value")
        return self


class SegmentationQuery(BaseModel):
    """A segmentation: metric of some event types over time, filtered and grouped."""

    events: list[str] = Field(min_length=1, description="event types, e.g. ['Purchase']")
    metric: Metric = "totals"
    property: PropertyRef | None = Field(
        default=None, description="the numeric event property (or field) summed or averaged"
    )
    interval: Interval = "day"
    start: datetime | date | None = Field(
        default=None, description="first day (UTC); default: a span back"
    )
    end: datetime | date | None = Field(
        default=None, description="last day, inclusive (UTC); default today"
    )
    filters: list[Filter] = Field(default_factory=list)
    group_by: PropertyRef | None = None
    limit: int = Field(10, ge=1, le=100, description="groups shown; the rest become 'other'")
    project: str | None = Field(default=None, description="project name; default every project")

    @field_validator("start", "end", mode="before")
    @classmethod
    def _day(cls, value: Any) -> Any:
        """``"2024-05-01"`` is a whole day (an inclusive ``end`` covers it all)."""
        if isinstance(value, str) and len(value) == 10:
            try:
                return date.fromisoformat(value)
            except ValueError:
                return value
        return value

    @field_validator("events")
    @classmethod
    def _no_blank(cls, events: list[str]) -> list[str]:
        if any(not e for e in events):
            raise ValueError("event types must not be empty")
        return list(dict.fromkeys(events))

    @model_validator(mode="after")
    def _metric_property(self) -> SegmentationQuery:
        if self.metric in ("sum", "avg"):
            if self.property is None:
                raise ValueError(f"metric {self.metric!r} needs a property, e.g. event:amount")
            if self.property.kind not in ("event", "field"):
                raise ValueError(f"metric {self.metric!r} sums an event property or field")
        return self


@dataclass
class Plan:
    """A query turned into SQL, with what is needed to shape its rows."""

    query: SegmentationQuery
    sql: str
    params: list[Any]
    base: str  # one row per matching event: bucket, ev, grp, uid, v
    start: datetime
    end: datetime  # exclusive
    buckets: list[datetime] = field(default_factory=list)


# -- properties as SQL ------------------------------------------------------------------


@dataclass
class _Profiles:
    """Which profile table holds each property, and the joins a query needs."""

    columns: dict[str, tuple[str, str]]  # property -> (table, SQL type)
    joins: dict[str, str] = field(default_factory=dict)  # table -> alias

    @classmethod
    def load(cls, con: duckdb.DuckDBPyConnection, store: DuckDBStore) -> _Profiles:
        columns: dict[str, tuple[str, str]] = {}
        for source, _cols in store.profile_tables():
            rows = con.execute(
                "SELECT column_name, data_type FROM duckdb_columns() "
                "WHERE schema_name = 'main' AND table_name = ?",
                [source.profile_table],
            ).fetchall()
            for name, sql_type in rows:
                if name not in ("user_id", "_synced_at"):
                    columns[name] = (source.profile_table, sql_type)
        return cls(columns)

    def column(self, name: str) -> tuple[str, str]:
        if name not in self.columns:
            known = ", ".join(sorted(self.columns)) or "none yet (sync a source first)"
            raise NotFoundError(f"no profile property named {name!r}; known: {known}")
        table, sql_type = self.columns[name]
        alias = self.joins.setdefault(table, f"p{len(self.joins)}")
        return f"{alias}.{quote(name)}", sql_type

    def sql(self) -> str:
        return " ".join(
            f"LEFT JOIN {quote(table)} {alias} ON {alias}.user_id = e.user_id"
            for table, alias in self.joins.items()
        )


def _json_path(name: str) -> str:
    return '$."' + name.replace('"', '\\"') + '"'


class _Builder:
    """Appends SQL text and its parameters in the order they appear."""

    def __init__(self, profiles: _Profiles) -> None:
        self.profiles = profiles
        self.params: list[Any] = []

    def bind(self, value: Any) -> str:
        self.params.append(value)
        return "?"

    def value(self, ref: PropertyRef) -> tuple[str, str]:
        """The SQL expression of a property and its SQL type (JSON values come as text)."""
        if ref.kind == "profile":
            return self.profiles.column(ref.name)
        if ref.kind == "field":
            if ref.name not in STANDARD_FIELDS:
                raise ConfigurationError(
                    f"no event field named {ref.name!r}; fields are {', '.join(STANDARD_FIELDS)}"
                )
            return f"e.{quote(ref.name)}", STANDARD_FIELDS[ref.name]
        column = "e.event_properties" if ref.kind == "event" else "e.user_properties"
        return f"json_extract_string({column}, {self.bind(_json_path(ref.name))})", "JSON"

    def number(self, ref: PropertyRef) -> str:
        expr, sql_type = self.value(ref)
        return (
            f"TRY_CAST({expr} AS DOUBLE)"
            if sql_type in ("JSON", "VARCHAR")
            else f"CAST({expr} AS DOUBLE)"
        )

    def condition(self, f: Filter) -> str:
        expr, sql_type = self.value(f)
        if f.op == "is set":
            return f"{expr} IS NOT NULL"
        if f.op == "is not set":
            return f"{expr} IS NULL"
        texts = [_text(v) for v in f.values]
        if f.op in ("contains", "does not contain"):
            any_of = " OR ".join(
                f"contains(lower(CAST({expr} AS VARCHAR)), lower({self.bind(t)}))" for t in texts
            )
            return f"({any_of})" if f.op == "contains" else f"({expr} IS NULL OR NOT ({any_of}))"
        if f.op in ("is", "is not"):
            cast = "VARCHAR" if sql_type == "JSON" else sql_type
            values = ", ".join(f"TRY_CAST({self.bind(t)} AS {cast})" for t in texts)
            if f.op == "is":
                return f"{expr} IN ({values})"
            return f"({expr} IS NULL OR {expr} NOT IN ({values}))"
        if len(texts) != 1:
            raise ConfigurationError(f"filter {f.label()} {f.op} takes one value")
        if sql_type in ("JSON", "VARCHAR"):
            return f"TRY_CAST({expr} AS DOUBLE) {f.op} TRY_CAST({self.bind(texts[0])} AS DOUBLE)"
        return f"{expr} {f.op} TRY_CAST({self.bind(texts[0])} AS {sql_type})"


def _text(value: Any) -> str:
    """A filter value as the text JSON or a typed cast compares with (``true``, ``5``)."""
    return value if isinstance(value, str) else json.dumps(value)


# -- planning and running ---------------------------------------------------------------


def time_range(query: SegmentationQuery, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The query's ``[start, end)`` in naive UTC (see :mod:`profilesync.events.timerange`)."""
    return _time_range(query.start, query.end, query.interval, now)


def plan(store: DuckDBStore, query: SegmentationQuery, now: datetime | None = None) -> Plan:
    """Resolve the query's properties against the store and write its SQL."""
    con = ensure_schema(store)
    b = _Builder(_Profiles.load(con, store))
    start, end = time_range(query, now)
    group = b.value(query.group_by)[0] if query.group_by else "NULL"
    value = b.number(query.property) if query.property else "NULL"
    where = [f"e.event_type IN ({', '.join(b.bind(ev) for ev in query.events)})"]
    where.append(f'e."time" >= {b.bind(start)} AND e."time" < {b.bind(end)}')
    if query.project:
        where.append(f"e.project_id = {b.bind(get_project(store, query.project).id)}")
    where += [b.condition(f) for f in query.filters]
    base = (
        f"SELECT date_trunc('{query.interval}', e.\"time\") AS bucket, e.event_type AS ev, "
        f"{group} AS grp, coalesce(e.user_id, 'device:' || e.device_id) AS uid, {value} AS v "
        f"FROM events e {b.profiles.sql()} WHERE {' AND '.join(where)}"
    )
    sql = (
        _uniques_sql(base, query.limit) if query.metric == "uniques" else _additive_sql(base, query)
    )
    return Plan(query, sql, b.params, base, start, end, buckets(start, end, query.interval))


def _additive_sql(base: str, query: SegmentationQuery) -> str:
    """Totals, sums and averages add up across groups: aggregate once, rank the groups."""
    rank = {"totals": "sum(n)", "sum": "sum(sv)", "avg": "sum(sv) / nullif(sum(nv), 0)"}
    return f"""WITH agg AS (
        SELECT bucket, ev, grp, count(*) AS n, count(v) AS nv, sum(v) AS sv
        FROM ({base}) GROUP BY ALL),
    ranked AS (
        SELECT grp, row_number() OVER (ORDER BY {rank[query.metric]} DESC NULLS LAST, grp) AS r
        FROM agg GROUP BY grp)
    SELECT a.bucket, a.ev, CASE WHEN r.r <= {query.limit} THEN a.grp END AS grp,
        r.r <= {query.limit} AS named, min(r.r) AS r, sum(a.n) AS n, sum(a.nv) AS nv, sum(a.sv) AS sv
    FROM agg a JOIN ranked r ON a.grp IS NOT DISTINCT FROM r.grp
    GROUP BY ALL"""


def _uniques_sql(base: str, limit: int) -> str:
    """Unique users do not add up across buckets or groups: one pass counts them per bucket
    and over the range (grouping sets); the top groups by the range count keep their name."""
    return f"""WITH counted AS MATERIALIZED (
        SELECT bucket, ev, grp, count(DISTINCT uid) AS n
        FROM ({base}) GROUP BY GROUPING SETS ((bucket, ev, grp), (ev, grp))),
    ranked AS (
        SELECT grp, row_number() OVER (ORDER BY sum(n) DESC, grp) AS r, count(*) OVER () AS groups
        FROM counted WHERE bucket IS NULL GROUP BY grp)
    SELECT c.bucket, c.ev, c.grp, true AS named, r.r, c.n, NULL AS nv, NULL AS sv, r.groups
    FROM counted c JOIN ranked r ON c.grp IS NOT DISTINCT FROM r.grp WHERE r.r <= {limit}"""


def _others_sql(base: str, top: list[Any]) -> tuple[str, list[Any]]:
    """Unique users of the groups outside ``top``, per bucket and over the range."""
    values = [g for g in top if g is not None]
    outside = f"grp NOT IN ({', '.join('?' * len(values))})" if values else "true"
    outside = f"grp IS NOT NULL AND {outside}" if None in top else f"(grp IS NULL OR {outside})"
    sql = f"""SELECT bucket, ev, NULL AS grp, false AS named, NULL AS r, count(DISTINCT uid) AS n,
        NULL AS nv, NULL AS sv FROM ({base}) WHERE {outside}
        GROUP BY GROUPING SETS ((bucket, ev), (ev))"""
    return sql, values


def run(con: duckdb.DuckDBPyConnection, p: Plan) -> list[tuple[Any, ...]]:
    """Execute a plan on ``con`` (a cursor of the store's database)."""
    try:
        rows = con.execute(p.sql, p.params).fetchall()
        if p.query.metric != "uniques":
            return rows
        if rows and rows[0][-1] > p.query.limit:  # more groups than shown: count the rest
            top = list({r[2]: None for r in rows})
            sql, values = _others_sql(p.base, top)
            others = con.execute(sql, [*p.params, *values]).fetchall()
            rows += [(*r[:4], p.query.limit + 1, *r[5:], None) for r in others]
        return [r[:-1] for r in rows]
    except duckdb.CatalogException as exc:
        raise ConfigurationError(
            f"a profile table changed while the query ran ({exc}); run the query again"
        ) from exc


# -- shaping the answer -----------------------------------------------------------------


def shape(p: Plan, rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    """The JSON answer: buckets, and one series per (event type, group), best first."""
    q = p.query
    index = {b: i for i, b in enumerate(p.buckets)}
    series: dict[tuple[str, Any, bool], _Series] = {}
    for bucket, ev, grp, named, rank, n, nv, sv in rows:
        key = (ev if len(q.events) > 1 else "", grp, bool(named))
        s = series.setdefault(key, _Series(q, key, int(rank), len(p.buckets)))
        if bucket is None:  # a unique-users total over the whole range
            s.total = int(n)
        else:
            s.add(index[bucket], int(n), int(nv or 0), float(sv or 0))
    if not q.group_by:  # an ungrouped series shows, as zeros, even when nothing matched
        for ev in q.events if len(q.events) > 1 else [""]:
            key = (ev, None, True)
            if key not in series:
                series[key] = _Series(q, key, 1, len(p.buckets))
                series[key].total = 0 if q.metric == "uniques" else None
    ordered = sorted(series.values(), key=lambda s: (s.rank, s.event or ""))
    return {
        "query": q.model_dump(mode="json"),
        "metric": q.metric,
        "interval": q.interval,
        "start": json_value(p.start),
        "end": json_value(p.end),
        "buckets": [json_value(b) for b in p.buckets],
        "series": [s.to_json() for s in ordered],
    }


class _Series:
    """One line of the chart; sums and averages are kept as parts until the end."""

    def __init__(
        self, q: SegmentationQuery, key: tuple[str, Any, bool], rank: int, size: int
    ) -> None:
        ev, grp, named = key
        self.metric = q.metric
        self.event = ev or (q.events[0] if len(q.events) == 1 else None)
        self.group = json_value(grp) if named else None
        self.other = not named
        self.rank = rank if named else 10**9
        group_label = OTHER_LABEL if not named else NONE_LABEL if grp is None else str(self.group)
        if not q.group_by:
            self.label = ev or q.events[0]
        else:
            self.label = f"{ev}: {group_label}" if ev else group_label
        self.parts: list[tuple[int, int, float]] = [(0, 0, 0.0)] * size
        self.total: int | float | None = None

    def add(self, at: int, n: int, nv: int, sv: float) -> None:
        self.parts[at] = (n, nv, sv)

    def to_json(self) -> dict[str, Any]:
        values = [_metric(self.metric, *part) for part in self.parts]
        if self.metric != "uniques":
            self.total = _metric(
                self.metric,
                sum(p[0] for p in self.parts),
                sum(p[1] for p in self.parts),
                sum(p[2] for p in self.parts),
            )
        return {
            "label": self.label,
            "event": self.event,
            "group": self.group,
            "other": self.other,
            "total": self.total,
            "values": values,
        }


def _metric(metric: str, n: int, nv: int, sv: float) -> int | float | None:
    """The value of one point; a sum past a double's range is null (JSON has no Infinity)."""
    if metric in ("totals", "uniques"):
        return n
    value = sv if metric == "sum" else sv / nv if nv else None
    return value if value is None or math.isfinite(value) else None


def segmentation(
    store: DuckDBStore, query: SegmentationQuery, con: duckdb.DuckDBPyConnection | None = None
) -> dict[str, Any]:
    """Plan on ``store``, run on ``con`` (default the store's connection), shape the answer."""
    p = plan(store, query)
    return shape(p, run(con or store.con, p))


# -- pickers ----------------------------------------------------------------------------


def known(store: DuckDBStore, project: str | None = None) -> dict[str, Any]:
    """What the query pickers offer: event types (with counts) and property names by kind."""
    con = ensure_schema(store)
    where, params = (
        ("WHERE project_id = ?", [get_project(store, project).id]) if project else ("", [])
    )
    types = con.execute(
        f'SELECT event_type, count(*), max("time") FROM events {where} GROUP BY 1 ORDER BY 2 DESC, 1',
        params,
    ).fetchall()
    names = con.execute(
        f"SELECT kind, name, list(DISTINCT event_type ORDER BY event_type) FROM event_catalog {where} "
        f"{'AND' if where else 'WHERE'} kind <> 'type' GROUP BY 1, 2 ORDER BY 1, 2",
        params,
    ).fetchall()
    profiles = _Profiles.load(con, store)
    sources = {s.profile_table: s.name for s, _ in store.profile_tables()}
    return {
        "event_types": [
            {"name": t, "count": int(n), "last_seen": json_value(last)} for t, n, last in types
        ],
        "properties": {
            "profile": [
                {"name": n, "type": t, "source": sources.get(table)}
                for n, (table, t) in sorted(profiles.columns.items())
            ],
            "user": [{"name": n, "event_types": ev} for k, n, ev in names if k == "user"],
            "event": [{"name": n, "event_types": ev} for k, n, ev in names if k == "event"],
            "field": [{"name": n, "type": t} for n, t in STANDARD_FIELDS.items()],
        },
    }
