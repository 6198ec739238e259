"""The segmentation compiler on its own: one expression renders in every store dialect,
user-supplied names and values never become SQL, and rows shape into the answer.

ClickHouse cannot run here: its renderings are checked by parsing them back with
sqlglot's ClickHouse dialect (DuckDB answers are pinned by ``tests/events/test_query.py``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from sqlglot import exp, parse_one

from profilesync.query import compiler, results
from profilesync.query.model import SegmentationQuery
from profilesync.query.relations import (
    Catalog,
    ProfileProperty,
    physical,
    profile_relation,
    relation,
)

START, END = datetime(2024, 5, 1), datetime(2024, 5, 4)
SNEAKY_NAME = "path'); DROP TABLE events; --\"x"
SNEAKY_VALUE = "x' OR '1'='1"
ODD_PROPERTY = 'Plan"; DROP TABLE events; --'


def catalog() -> Catalog:
    text = exp.DataType.build("VARCHAR")
    props = {
        name: ProfileProperty(name, "users", text, "VARCHAR")
        for name in ("Plan", "Country", ODD_PROPERTY)
    }
    props["Score"] = ProfileProperty("Score", "scores", exp.DataType.build("DOUBLE"), "DOUBLE")
    return Catalog(props)


REQUESTS: dict[str, dict[str, Any]] = {
    "totals": {"events": ["Purchase"]},
    "by profile, profile filter": {
        "events": ["Page Viewed", "Feature Used"],
        "group_by": {"kind": "profile", "name": "Plan"},
        "filters": [{"kind": "profile", "name": "Country", "values": ["US", "DE"]}],
    },
    "uniques by event property": {
        "events": ["View"],
        "metric": "uniques",
        "interval": "week",
        "group_by": {"kind": "event", "name": "path"},
        "filters": [{"kind": "user", "name": "plan", "op": "is not", "values": ["free"]}],
    },
    "sum with numeric and text filters": {
        "events": ["Purchase"],
        "metric": "avg",
        "property": {"kind": "event", "name": "amount"},
        "filters": [
            {"kind": "profile", "name": "Score", "op": ">=", "values": [0.5]},
            {"kind": "event", "name": "coupon", "op": "does not contain", "values": ["TEST"]},
            {"kind": "field", "name": "platform", "op": "is set"},
        ],
    },
    "by group, group filter": {
        "events": ["View"],
        "metric": "uniques",
        "group_by": {"kind": "group", "name": "company"},
        "filters": [{"kind": "group", "name": "team", "op": "is not", "values": ["red"]}],
    },
}


def compile_request(spec: dict[str, Any], dialect: str = "duckdb") -> compiler.Compiled:
    query = SegmentationQuery(**spec)
    return compiler.compile_segmentation(query, catalog(), START, END, dialect=dialect)


def rendered(compiled: compiler.Compiled, dialect: str) -> str:
    if dialect == "duckdb":  # numbered parameters, bound by the driver
        return compiled.expression.sql(dialect)
    return compiler.inline(compiled.expression, compiled.params).sql(dialect)


@pytest.mark.parametrize("dialect", ["duckdb", "clickhouse"])
@pytest.mark.parametrize("name", list(REQUESTS))
def test_one_expression_renders_and_parses_back_in_each_dialect(name: str, dialect: str) -> None:
    compiled = compile_request(REQUESTS[name], dialect)
    numbers = {p.name for p in compiled.expression.find_all(exp.Placeholder)}
    assert numbers == {str(i) for i in range(1, len(compiled.params) + 1)}  # each value bound
    sql = rendered(compiled, dialect)
    again = parse_one(sql, read=dialect)
    assert again.sql(dialect) == sql
    tables = {t.name for t in again.find_all(exp.Table)}
    assert {"events"} <= tables <= {"events", "users", "scores", "agg", "ranked", "counted"}


def test_a_group_is_read_from_the_events_groups_in_each_dialect() -> None:
    spec = REQUESTS["by group, group filter"]
    duck = compile_request(spec, "duckdb")
    assert "e.groups ->> $" in rendered(duck, "duckdb")
    assert {'$."company"', '$."team"'} <= set(duck.params)
    click = rendered(compile_request(spec, "clickhouse"), "clickhouse")
    assert "JSONExtractString(e.groups, 'company')" in click
    assert "JSONExtractString(e.groups, 'team')" in click


def test_the_dialects_differ_only_where_they_must() -> None:
    spec = REQUESTS["uniques by event property"]
    duck = rendered(compile_request(spec, "duckdb"), "duckdb")
    click = rendered(compile_request(spec, "clickhouse"), "clickhouse")
    assert "->>" in duck and "$1" in duck  # JSON path, bound
    assert "JSONExtractString(e.event_properties, 'path')" in click  # a key, not a path
    assert "DATE_TRUNC('WEEK'" in duck and "dateTrunc('WEEK'" in click


def test_unique_users_outside_the_top_groups_reuse_the_segmentation_values() -> None:
    compiled = compile_request(REQUESTS["uniques by event property"])
    query, params = compiler.others(compiled, ["/docs", None])
    assert params[: len(compiled.params)] == compiled.params
    assert params[len(compiled.params) :] == ["/docs"]
    placeholders = {p.name for p in query.find_all(exp.Placeholder)}
    assert placeholders == {str(i) for i in range(1, len(params) + 1)}
    parse_one(query.sql("duckdb"), read="duckdb")


def sneaky_request() -> dict[str, Any]:
    return {
        "events": ["View", SNEAKY_VALUE],
        "group_by": {"kind": "profile", "name": ODD_PROPERTY},
        "filters": [
            {"kind": "event", "name": SNEAKY_NAME, "op": "contains", "values": [SNEAKY_VALUE]},
            {"kind": "user", "name": SNEAKY_NAME, "values": [SNEAKY_VALUE, 5]},
            {"kind": "profile", "name": "Plan", "op": "<", "values": [SNEAKY_VALUE]},
        ],
    }


def test_user_values_are_parameters_never_sql() -> None:
    compiled = compile_request(sneaky_request())
    sql = rendered(compiled, "duckdb")
    assert SNEAKY_VALUE not in sql and "'1'" not in sql and "path'" not in sql
    assert SNEAKY_VALUE in compiled.params
    assert '$."path\'); DROP TABLE events; --\\"x"' in compiled.params  # the JSON path, bound
    tree = parse_one(sql, read="duckdb")
    assert not list(tree.find_all(exp.Drop, exp.Command))
    # the odd property name is one quoted identifier, read back as the same name
    assert ODD_PROPERTY in {c.name for c in tree.find_all(exp.Column)}


def test_inlined_values_stay_string_literals() -> None:
    compiled = compile_request(sneaky_request(), "clickhouse")
    tree = parse_one(rendered(compiled, "clickhouse"), read="clickhouse")
    assert not list(tree.find_all(exp.Drop, exp.Command))
    assert {t.name for t in tree.find_all(exp.Table)} <= {"events", "users", "agg", "ranked"}
    strings = {lit.this for lit in tree.find_all(exp.Literal) if lit.is_string}
    strings |= {key.this for key in tree.find_all(exp.JSONPathKey)}  # JSONExtractString keys
    assert {SNEAKY_VALUE, SNEAKY_NAME} <= strings


def test_physical_names_replace_logical_relations_only() -> None:
    query = (
        exp.select("*")
        .with_("agg", as_=exp.select("1"))
        .from_(relation("events", "e"))
        .join(profile_relation("users", "p0"), on="p0.user_id = e.user_id")
        .join("agg", on="true")
    )
    tables = {("", "events"): "events_v2", ("profiles", "users"): "profiles_users"}
    out = physical(query, tables).sql("duckdb")
    assert "FROM events_v2 AS e" in out
    assert "JOIN profiles_users AS p0" in out
    assert "JOIN agg" in out
    assert "profiles.users" in query.sql("duckdb")  # the logical expression is unchanged


def day(n: int) -> datetime:
    return datetime(2024, 5, n)


BUCKETS = [day(1), day(2), day(3)]


def shaped(rows: list[tuple[Any, ...]], **spec: Any) -> dict[str, Any]:
    query = SegmentationQuery(events=["Purchase"], start="2024-05-01", end="2024-05-03", **spec)
    return results.shape(query, day(1), day(4), BUCKETS, rows)


def test_shaping_top_groups_other_and_none() -> None:
    # (bucket, ev, grp, named, rank, n, nv, sv)
    rows = [
        (day(1), "Purchase", "pro", True, 1, 2, 0, 0.0),
        (day(2), "Purchase", "pro", True, 1, 1, 0, 0.0),
        (day(2), "Purchase", None, True, 2, 4, 0, 0.0),
        (day(2), "Purchase", None, False, 3, 2, 0, 0.0),
    ]
    answer = shaped(rows, group_by={"kind": "profile", "name": "Plan"}, limit=2)
    assert answer["buckets"] == [
        "2024-05-01T00:00:00Z",
        "2024-05-02T00:00:00Z",
        "2024-05-03T00:00:00Z",
    ]
    series = [(s["label"], s["values"], s["total"], s["other"]) for s in answer["series"]]
    assert series == [
        ("pro", [2, 1, 0], 3, False),
        ("(none)", [0, 4, 0], 4, False),
        ("other", [0, 2, 0], 2, True),
    ]


def test_shaping_averages_and_unique_totals() -> None:
    amount = {"kind": "event", "name": "amount"}
    averages = shaped(
        [
            (day(1), "Purchase", None, True, 1, 2, 2, 15.0),
            (day(2), "Purchase", None, True, 1, 1, 1, 7.0),
        ],
        metric="avg",
        property=amount,
    )
    assert averages["series"][0]["values"] == [7.5, 7.0, None]
    assert averages["series"][0]["total"] == pytest.approx(22 / 3)
    uniques = shaped(
        [
            (day(1), "Purchase", None, True, 1, 2, None, None),
            (None, "Purchase", None, True, 1, 2, None, None),
        ],
        metric="uniques",
    )
    assert uniques["series"][0]["values"] == [2, 0, 0]
    assert uniques["series"][0]["total"] == 2  # the range count, not the sum of days


def test_an_ungrouped_query_without_rows_shows_zeros() -> None:
    answer = shaped([], metric="uniques")
    assert [(s["label"], s["values"], s["total"]) for s in answer["series"]] == [
        ("Purchase", [0, 0, 0], 0)
    ]


def test_a_sum_past_a_double_is_null() -> None:
    assert results.metric_value("sum", 2, 2, float("inf")) is None
    assert results.metric_value("totals", 3, 0, 0.0) == 3
