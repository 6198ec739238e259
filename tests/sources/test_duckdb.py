"""The DuckDB-file source: snapshot diff only, queries with joins, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from profilesync.errors import ConfigurationError, NotFoundError, WarehouseUnavailableError
from profilesync.model import Connection
from profilesync.store.duckdb import DuckDBStore
from profilesync.sync import engine
from profilesync.warehouses.duckdb.warehouse import DuckDBWarehouse
from tests.conftest import Cli
from tests.sources.conftest import (
    USERS,
    Warehouse,
    add_source,
    connect,
    profiles,
    user,
    writer_process,
)


@pytest.fixture
def synced(wh: Warehouse, store: DuckDBStore) -> Warehouse:
    """Table ``main.users`` with three users, a diff source ``users`` over it, first sync done."""
    wh.create_table("users", USERS, [user("alice-1"), user("bob-22", "free", 3), user("carol-3")])
    connect(store, wh)
    add_source(store, "users", table="main.users", strategy="diff")
    engine.sync(store, "users")
    return wh


def test_connection_needs_an_existing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="--path FILE"):
        DuckDBWarehouse.validate_config({})
    with pytest.raises(ConfigurationError, match="existing DuckDB database file"):
        DuckDBWarehouse.validate_config({"path": str(tmp_path / "missing.duckdb")})


def test_tables_and_views_are_named_schema_dot_table(wh: Warehouse) -> None:
    wh.sql(
        "CREATE SCHEMA crm",
        "CREATE TABLE crm.accounts (uid VARCHAR)",
        "CREATE TABLE main.users (uid VARCHAR, plan VARCHAR)",
        "CREATE VIEW main.paying AS SELECT * FROM main.users WHERE plan <> 'free'",
    )
    source = DuckDBWarehouse(Connection("wh", "duckdb", wh.connection_config()))
    try:
        assert source.list_tables() == ["crm.accounts", "main.paying", "main.users"]
        assert source.table_schema("crm.accounts").names == ["uid"]
        with pytest.raises(NotFoundError, match=r"crm\.accounts, main\.paying, main\.users"):
            source.table_schema("main.nope")
    finally:
        source.close()


def test_diff_applies_and_meters_only_real_differences(
    synced: Warehouse, store: DuckDBStore
) -> None:
    assert engine.sync(store, "users").operations == 0  # nothing changed: nothing metered
    synced.sql(
        "INSERT INTO users VALUES ('dave-44', 'team', 9, 0.1)",
        "UPDATE users SET plan = 'enterprise' WHERE uid = 'alice-1'",
        "UPDATE users SET seats = NULL WHERE uid = 'bob-22'",
        "UPDATE users SET score = 0.9 WHERE uid = 'carol-3'",  # not a mapped property
        "DELETE FROM users WHERE uid = 'carol-3'",
        "INSERT INTO users VALUES ('carol-3', 'pro', 1, 0.5)",  # deleted and re-inserted as it was
    )
    used_before = int(store.usage()["used"])
    result = engine.sync(store, "users")
    assert profiles(store) == {
        "alice-1": {"plan": "enterprise", "seats": 1},
        "bob-22": {"plan": "free"},
        "carol-3": {"plan": "pro", "seats": 1},
        "dave-44": {"plan": "team", "seats": 9},
    }
    assert (result.mode, result.read) == ("diff", 4)
    assert (result.inserted, result.updated, result.deleted, result.unchanged) == (1, 2, 0, 1)
    assert int(store.usage()["used"]) - used_before == 3
    synced.sql("DELETE FROM users WHERE uid = 'dave-44'")
    assert engine.sync(store, "users").deleted == 1
    assert "dave-44" not in profiles(store)


def test_a_replaced_table_is_simply_diffed(synced: Warehouse, store: DuckDBStore) -> None:
    synced.replace_table("users", USERS, [user("alice-1"), user("bob-22", "team", 3)])
    result = engine.sync(store, "users")
    assert (result.inserted, result.updated, result.deleted, result.unchanged) == (0, 1, 1, 1)


def test_changes_are_refused_with_the_strategy_to_use(
    synced: Warehouse, store: DuckDBStore
) -> None:
    source = DuckDBWarehouse(Connection("wh", "duckdb", synced.connection_config()), "users")
    checkpoint = store.get_source("users").checkpoint
    assert checkpoint is not None
    with pytest.raises(ConfigurationError, match="only support --strategy diff"):
        source.changes(store.get_source("users").mapping, checkpoint)


def test_test_mapping_explains_what_diff_costs(synced: Warehouse, store: DuckDBStore) -> None:
    report = engine.test_mapping(store, store.get_source("users"))
    strategy = next(c for c in report["checks"] if c["name"] == "strategy")
    assert strategy["level"] == "info"
    assert "reads the whole table (3 rows now)" in strategy["message"]
    assert "only rows that really differ are applied and metered" in strategy["message"]
    assert report["ok"]


def test_a_join_query_runs_as_written_under_diff(wh: Warehouse, store: DuckDBStore) -> None:
    wh.create_table("users", USERS, [user("alice-1"), user("bob-22", "free")])
    wh.create_table(
        "orgs",
        {"uid": "string", "org": "string"},
        [{"uid": "alice-1", "org": "acme"}, {"uid": "bob-22", "org": "initech"}],
    )
    connect(store, wh)
    query = """WITH o AS (SELECT uid, upper(org) AS org FROM main.orgs)
               SELECT u.uid AS "user_id", u.plan AS "Plan", o.org AS "Org"
               FROM main.users u JOIN o ON o.uid = u.uid;"""
    add_source(store, "q", query=query, strategy="diff")
    assert engine.sync(store, "q").inserted == 2
    wh.sql(
        "UPDATE orgs SET org = 'globex' WHERE uid = 'bob-22'",
        "DELETE FROM orgs WHERE uid = 'alice-1'",
    )
    result = engine.sync(store, "q")
    assert profiles(store) == {"bob-22": {"Plan": "free", "Org": "GLOBEX"}}
    assert (result.updated, result.deleted, result.operations) == (1, 1, 2)


def test_a_broken_query_fails_test_mapping_with_the_reason(
    wh: Warehouse, store: DuckDBStore
) -> None:
    wh.create_table("users", USERS, [user("alice-1")])
    connect(store, wh)
    add_source(
        store,
        "q",
        query='SELECT u.uid AS "user_id", o.org AS "Org" FROM main.users u JOIN main.orgs o ON o.uid = u.uid',
        strategy="diff",
    )
    with pytest.raises(ConfigurationError, match=r"reading the query failed: .*orgs"):
        engine.test_mapping(store, store.get_source("q"))
    source = DuckDBWarehouse(Connection("wh", "duckdb", wh.connection_config()))
    try:
        found = source.check(store.get_source("q").mapping, 43200, "diff")
    finally:
        source.close()
    assert found[0].level == "fail" and "orgs" in found[0].message


def test_a_writer_holding_the_file_is_a_retriable_error(wh: Warehouse, store: DuckDBStore) -> None:
    wh.create_table("users", USERS, [user("alice-1")])
    with writer_process(f"con = duckdb.connect({str(wh.path)!r})") as writer:
        source = DuckDBWarehouse(Connection("wh", "duckdb", wh.connection_config()))
        with pytest.raises(
            WarehouseUnavailableError,
            match=rf"open for writing in another process \(PID {writer.pid}\)",
        ):
            source.list_tables()


def test_cli_diff_flow_end_to_end(wh: Warehouse, cli: Cli) -> None:
    wh.create_table("users", USERS, [user("alice-1"), user("bob-22", "free", 3)])
    wh.create_table("orgs", {"uid": "string", "org": "string"}, [{"uid": "alice-1", "org": "acme"}])
    cli.ok("connection", "add", "wh", "--kind", "duckdb", "--path", str(wh.path))
    refused = cli(
        "source", "add", "cdc", "--connection", "wh", "--table", "main.users", "--user-id", "uid"
    )
    assert refused.returncode != 0 and "--strategy diff" in refused.stderr
    cli.ok(
        "source",
        "add",
        "s",
        "--connection",
        "wh",
        "--table",
        "main.users",
        "--user-id",
        "uid",
        "--property",
        "plan",
        "--strategy",
        "diff",
    )
    query = 'SELECT u.uid AS "user_id", o.org AS "Org" FROM main.users u JOIN main.orgs o ON o.uid = u.uid'
    cli.ok("source", "add", "q", "--connection", "wh", "--query", query, "--strategy", "diff")
    assert cli.json("sync", "s")["inserted"] == 2
    assert cli.json("sync", "q")["inserted"] == 1
    wh.sql("UPDATE users SET plan = 'team' WHERE uid = 'bob-22'", "UPDATE orgs SET org = 'globex'")
    second = cli.json("sync", "s")
    assert (second["updated"], second["unchanged"], second["operations"]) == (1, 1, 1)
    assert cli.json("sync", "q")["operations"] == 1
    assert cli.json("profile", "get", "alice-1")["properties"] == {"plan": "pro", "Org": "globex"}
