"""Mapping forms: ``--table/--property`` and the profile ``SELECT``; what is refused and why."""

from __future__ import annotations

from typing import Any

import duckdb
import pytest

from profilesync.errors import ConfigurationError, NotFoundError
from profilesync.mapping import QUERY_TABLE, from_columns, from_query, parse_property
from profilesync.model import Connection, Mapping
from profilesync.sources.delta import DeltaSource
from profilesync.sync.engine import resolve_mapping
from tests.conftest import Warehouse, users_table

SCORES = """SELECT user_id AS "user_id",
       upgrade_propensity_score AS "Upgrade Propensity Score",
       user_model_version AS "User Model Version"
FROM ml_models.prod_propensity_scoring"""


def test_the_usual_profile_query_maps_to_one_table() -> None:
    mapping = from_query(SCORES, "databricks")
    assert mapping.table == "ml_models.prod_propensity_scoring"
    assert mapping.user_id == "user_id"
    assert mapping.property_names == ["Upgrade Propensity Score", "User Model Version"]
    assert mapping.columns == ("upgrade_propensity_score", "user_id", "user_model_version")
    assert mapping.where is None
    assert mapping.query == SCORES


def test_where_and_expressions_are_kept_in_duckdb_sql_without_table_names() -> None:
    mapping = from_query(
        "SELECT t.`uid` AS `user_id`, concat(t.first, ' ', t.last) AS `Full Name` "
        "FROM prod.users t WHERE t.active AND t.country = 'US'",
        "databricks",
    )
    assert mapping.table == "prod.users"
    assert mapping.user_id == '"uid"'
    expression = mapping.properties[0].expression
    assert duckdb.sql(
        f"SELECT {expression} FROM (SELECT 'Ada' AS first, 'L' AS last)"
    ).fetchone() == ("Ada L",)
    assert mapping.properties[0].column is None
    assert mapping.where == "active AND country = 'US'"
    assert set(mapping.columns) == {"uid", "first", "last", "active", "country"}


@pytest.mark.parametrize(
    ("query", "what"),
    [
        ('SELECT a.id AS "user_id" FROM a JOIN b ON a.id = b.id', "a JOIN"),
        ('WITH x AS (SELECT id FROM a) SELECT id AS "user_id" FROM x', "WITH"),
        ('SELECT id AS "user_id" FROM a UNION SELECT id AS "user_id" FROM b', "UNION"),
        ('SELECT id AS "user_id", count(*) AS "N" FROM a GROUP BY id', "GROUP BY"),
        ('SELECT id AS "user_id" FROM a WHERE id IN (SELECT id FROM b)', "subquery"),
        ('SELECT id AS "user_id" FROM a LIMIT 10', "LIMIT"),
        ('SELECT id AS "user_id", rank() OVER (ORDER BY x) AS "R" FROM a', "window function"),
    ],
)
def test_queries_cdc_cannot_follow_are_refused_saying_what_is_supported(
    query: str, what: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        from_query(query)
    message = str(info.value)
    assert what in message
    assert "single-table SELECT" in message


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ('SELECT id, name AS "Name" FROM a', 'no column aliased "user_id"'),
        ("SELECT * FROM a", r"SELECT \* cannot be mapped"),
        ('SELECT id AS "user_id" FROM a; SELECT 1', "one SELECT"),
        ("SELEC id FRM", "does not parse"),
        ('SELECT 1 AS "user_id"', "FROM one table"),
        ('SELECT id AS "user_id", x AS "P", y AS "P" FROM a', "mapped twice"),
        ('SELECT id AS "user_id", x AS "_hidden" FROM a', "reserved"),
    ],
)
def test_malformed_queries_are_refused_with_the_reason(query: str, words: str) -> None:
    with pytest.raises(ConfigurationError, match=words):
        from_query(query)


def test_pushdown_accepts_joins_and_reads_the_output_columns() -> None:
    mapping = from_query(
        'SELECT a.id AS "user_id", b.plan AS "Plan" FROM a JOIN b ON a.id = b.id',
        pushdown=True,
    )
    assert mapping.table == QUERY_TABLE
    assert mapping.property_names == ["Plan"]
    with pytest.raises(ConfigurationError, match='no output column named "user_id"'):
        from_query("SELECT a.id FROM a JOIN b ON a.id = b.id", pushdown=True)


def test_column_form_with_display_names() -> None:
    mapping = from_columns("prod.users", "uid", [parse_property("title=Job Title"), ("dma", "dma")])
    assert mapping.user_id == '"uid"'
    assert mapping.property_names == ["Job Title", "dma"]
    assert mapping.columns == ("uid", "title", "dma")
    assert parse_property(" score = Upgrade Score ") == ("score", "Upgrade Score")
    assert parse_property("score") == ("score", "score")


@pytest.mark.parametrize(
    ("props", "words"),
    [
        ([("a", "X"), ("b", "X")], "mapped twice"),
        ([("a", "Title"), ("b", "title")], "mapped twice"),  # one table: names ignore case
        ([("uid", "user_id")], "is the key"),
        ([("uid", "User_ID")], "is the key"),
        ([("a", "_x")], "reserved"),
    ],
)
def test_column_form_refuses_bad_names(props: list[tuple[str, str]], words: str) -> None:
    with pytest.raises(ConfigurationError, match=words):
        from_columns("t", "uid", props)
    with pytest.raises(ConfigurationError, match="names no column"):
        parse_property("=Name")


def test_resolve_mapping_checks_the_table_and_columns_exist(warehouse: Warehouse) -> None:
    warehouse.create("prod.users", users_table(1))
    source = DeltaSource(Connection("lake", "delta", {"path": str(warehouse.root)}), "users")

    def resolve(strategy: str = "cdc", **given: Any) -> Mapping:
        args: dict[str, Any] = {"table": None, "query": None, "user_id": None, "properties": []}
        return resolve_mapping(source, **{**args, **given}, strategy=strategy)

    with pytest.raises(NotFoundError, match=r"has no column\(s\) nope \(it has: uid, title"):
        resolve(table="prod.users", user_id="uid", properties=[("nope", "N")])
    with pytest.raises(NotFoundError, match=r"'prod.missing' not found .*tables there: prod.users"):
        resolve(query='SELECT id AS "user_id" FROM prod.missing')
    with pytest.raises(ConfigurationError, match=r"either --table .* or --query"):
        resolve()
    with pytest.raises(ConfigurationError, match="--table needs --user-id"):
        resolve(table="prod.users")
    # a Delta connection runs no SQL: a join stays refused under diff too
    with pytest.raises(ConfigurationError, match="a JOIN"):
        resolve("diff", query='SELECT a.uid AS "user_id" FROM a JOIN b ON a.uid = b.uid')
    assert resolve(query='SELECT uid AS "user_id", title AS "T" FROM prod.users').columns == (
        "title",
        "uid",
    )
