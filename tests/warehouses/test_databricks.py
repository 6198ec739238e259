"""The databricks source end to end: the real engine and store, a stand-in SQL warehouse.

Databricks cannot be reached from here. ``FakeDatabricks`` answers the statements the
source sends (each parsed with sqlglot's databricks dialect, see ``fakes.UNPARSED`` for
the two it cannot read) with results shaped like the recorded ones in ``recorded/``.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlglot import exp

from profilesync.errors import (
    ChangeTrackingError,
    ConfigurationError,
    MissingDependencyError,
    NotFoundError,
    RetentionExceededError,
    TableReplacedError,
)
from profilesync.model import Connection
from profilesync.store.duckdb import DuckDBStore
from profilesync.sync import engine
from profilesync.warehouses import validate_config
from profilesync.warehouses.databricks.warehouse import DatabricksWarehouse
from tests.warehouses.conftest import (
    DATABRICKS_CONFIG,
    add_source,
    checks_by_name,
    profiles,
    run_sync,
)
from tests.warehouses.fakes import FakeDatabricks

COLUMNS = {
    "uid": "bigint",
    "title": "string",
    "score": "decimal(10,2)",
    "logins": "int",
    "active": "boolean",
    "signed_up": "timestamp",
    "tags": "array<string>",
}
PROPS = [
    ("title", "Title"),
    ("score", "Score"),
    ("logins", "Logins"),
    ("active", "Active"),
    ("signed_up", "Signed Up"),
    ("tags", "Tags"),
]
T0 = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)


def user(
    uid: int, title: str | None = "analyst", score: str = "1.50", logins: int = 3
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "score": Decimal(score),
        "logins": logins,
        "active": logins > 5,
        "signed_up": T0,
        "tags": ["beta"],
    }


def expected(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {}
    for row in rows:
        values = {
            "Title": row["title"],
            "Score": float(row["score"]),
            "Logins": row["logins"],
            "Active": row["active"],
            "Signed Up": "2024-05-01T09:30:00Z",
            "Tags": '["beta"]',
        }
        out[str(row["uid"])] = {k: v for k, v in values.items() if v is not None}
    return out


@pytest.fixture
def users(databricks: FakeDatabricks, store: DuckDBStore) -> FakeDatabricks:
    """``main.crm.users`` (change data feed on) with three users, a source and its first sync."""
    databricks.create_table(
        "users", COLUMNS, [user(10001), user(10002, "cto", "9.25", 40), user(10003)]
    )
    add_source(store, "users", "dbx", table="crm.users", user_id="uid", properties=PROPS)
    first = run_sync(store, "users")
    assert (first["mode"], first["inserted"]) == ("initial", 3)
    return databricks


def data_selects(fake: FakeDatabricks) -> list[exp.Select]:
    return [t for t in fake.parsed("databricks") if isinstance(t, exp.Select)]


def change_reads(fake: FakeDatabricks) -> list[exp.Anonymous]:
    return [
        s.args["from_"].this.this
        for s in data_selects(fake)
        if isinstance(s.args["from_"].this.this, exp.Anonymous)
    ]


def test_first_sync_reads_a_version_and_records_it_with_the_table_id(
    users: FakeDatabricks, store: DuckDBStore
) -> None:
    assert profiles(store) == expected(users.rows("users"))
    checkpoint = store.get_source("users").checkpoint
    assert checkpoint is not None
    table = users.table("users")
    assert (checkpoint.position, checkpoint.identity) == ("0", table.id)
    [select] = data_selects(users)
    version = select.args["from_"].this.args["version"]
    assert version.expression.name == "0"


def test_changes_follow_the_feed_from_the_checkpoint_to_the_latest_version(
    users: FakeDatabricks, store: DuckDBStore
) -> None:
    users.update("users", "uid", 10001, {"title": "lead", "logins": 9})  # v1
    users.update("users", "uid", 10003, {"title": None})  # v2: NULL-out
    users.delete("users", "uid", 10002)  # v3
    users.insert("users", [user(10004), user(10005)])  # v4
    users.delete("users", "uid", 10005)  # v5: inserted and deleted between syncs
    users.update("users", "uid", 10004, {"uid": 10044})  # v6: the key itself changes

    result = run_sync(store, "users")

    assert (result["inserted"], result["updated"], result["deleted"]) == (1, 2, 1)
    assert profiles(store) == expected(users.rows("users"))
    [call] = change_reads(users)
    name, start, end = call.expressions
    assert (name.name, start.name, end.name) == ("main.crm.users", "1", "6")
    assert store.get_source("users").checkpoint.position == "6"  # type: ignore[union-attr]


def test_no_new_version_reads_no_changes(users: FakeDatabricks, store: DuckDBStore) -> None:
    result = run_sync(store, "users")
    assert (result["operations"], result["read"]) == (0, 0)
    assert change_reads(users) == []


def test_mapping_without_the_change_data_feed_fails_with_the_sql_to_run(
    databricks: FakeDatabricks, store: DuckDBStore
) -> None:
    databricks.create_table("users", COLUMNS, [user(10001)], cdf=False)
    source = add_source(store, "users", "dbx", table="users", user_id="uid", properties=PROPS)
    report = engine.test_mapping(store, source)
    assert not report["ok"]
    feed = checks_by_name(report)["change data feed"]
    assert feed["level"] == "fail"
    assert feed["fix_sql"] == (
        "ALTER TABLE main.crm.users SET TBLPROPERTIES (delta.enableChangeDataFeed = true)"
    )


def test_mapping_reports_the_version_the_feed_was_enabled_and_the_retention(
    databricks: FakeDatabricks, store: DuckDBStore
) -> None:
    databricks.create_table(
        "users",
        COLUMNS,
        [user(10001)],
        cdf=False,
        properties={"delta.logRetentionDuration": "interval 3 days"},
    )
    databricks.insert("users", [user(10002)])
    databricks.set_properties("users", {"delta.enableChangeDataFeed": "true"})
    source = add_source(
        store, "users", "dbx", table="users", user_id="uid", properties=PROPS, frequency="1d"
    )
    checks = checks_by_name(engine.test_mapping(store, source))
    assert checks["change data feed"]["level"] == "pass"
    assert "since version 2" in checks["change data feed"]["message"]
    assert checks["delta.logRetentionDuration"]["level"] == "warn"
    assert checks["delta.deletedFileRetentionDuration"]["level"] == "pass"  # default 1 week
    databricks.set_properties("users", {"delta.deletedFileRetentionDuration": "interval 12 hours"})
    checks = checks_by_name(engine.test_mapping(store, store.get_source("users")))
    refused = checks["delta.deletedFileRetentionDuration"]
    assert refused["level"] == "fail"
    assert refused["fix_sql"] == (
        "ALTER TABLE main.crm.users SET TBLPROPERTIES "
        "(delta.deletedFileRetentionDuration = 'interval 7 days')"
    )


def test_feed_turned_off_fails_the_sync_with_the_fix(
    users: FakeDatabricks, store: DuckDBStore
) -> None:
    users.unset_properties("users", ["delta.enableChangeDataFeed"])
    with pytest.raises(ChangeTrackingError, match="enableChangeDataFeed = true") as failure:
        run_sync(store, "users")
    assert "--resync" in str(failure.value)


def test_feed_off_and_on_again_after_the_checkpoint_needs_a_resync(
    users: FakeDatabricks, store: DuckDBStore
) -> None:
    users.unset_properties("users", ["delta.enableChangeDataFeed"])  # v1
    users.update("users", "uid", 10001, {"title": "unrecorded"})  # v2: not in the feed
    users.set_properties("users", {"delta.enableChangeDataFeed": "true"})  # v3
    with pytest.raises(RetentionExceededError, match="enabled at version 3, after the checkpoint"):
        run_sync(store, "users")
    assert change_reads(users) == []
    assert run_sync(store, "users", resync=True)["updated"] == 1
    assert profiles(store) == expected(users.rows("users"))


def test_a_new_table_id_is_a_replacement(users: FakeDatabricks, store: DuckDBStore) -> None:
    old = users.rows("users")
    users.drop_and_create("users", [old[0], user(10009)])
    with pytest.raises(TableReplacedError, match="table id changed") as failure:
        run_sync(store, "users")
    assert "--resync" in str(failure.value)
    result = run_sync(store, "users", resync=True)
    assert (result["inserted"], result["deleted"], result["unchanged"]) == (1, 2, 1)
    assert profiles(store) == expected(users.rows("users"))


def test_create_or_replace_keeping_the_id_is_a_replacement(
    users: FakeDatabricks, store: DuckDBStore
) -> None:
    users.create_or_replace("users", [user(10001, "other")])
    with pytest.raises(TableReplacedError, match="CREATE OR REPLACE"):
        run_sync(store, "users")
    assert change_reads(users) == []


def test_a_version_that_went_back_is_a_replacement(
    users: FakeDatabricks, store: DuckDBStore
) -> None:
    users.update("users", "uid", 10001, {"title": "x"})
    users.update("users", "uid", 10001, {"title": "y"})
    run_sync(store, "users")
    table = users.table("users")
    table.commits = table.commits[:2]  # the table was restored from an older copy of its log
    with pytest.raises(TableReplacedError, match="version went back from 2 to 1"):
        run_sync(store, "users")


def test_log_cleanup_past_the_checkpoint_is_a_retention_error(
    users: FakeDatabricks, store: DuckDBStore
) -> None:
    for title in ("a", "b", "c"):
        users.update("users", "uid", 10001, {"title": title})
    users.clean_log("users", keep_from=2)
    with pytest.raises(
        RetentionExceededError, match="DESCRIBE HISTORY starts at version 2"
    ) as failure:
        run_sync(store, "users")
    assert "delta.logRetentionDuration" in str(failure.value)


def test_vacuumed_change_files_are_a_retention_error(
    users: FakeDatabricks, store: DuckDBStore
) -> None:
    users.update("users", "uid", 10001, {"title": "a"})
    users.vacuum("users")
    with pytest.raises(RetentionExceededError, match="DELTA_CHANGE_DATA_FILE_NOT_FOUND"):
        run_sync(store, "users")
    assert profiles(store) == expected(
        [{**r, "title": "analyst"} if r["uid"] == 10001 else r for r in users.rows("users")]
    )
    users.fail_while_reading = None
    assert run_sync(store, "users", resync=True)["updated"] == 1


def test_unknown_table_is_named(databricks: FakeDatabricks, store: DuckDBStore) -> None:
    with pytest.raises(NotFoundError, match="TABLE_OR_VIEW_NOT_FOUND"):
        add_source(store, "u", "dbx", table="crm.nope", user_id="uid")


def test_query_with_a_join_runs_in_databricks_as_a_snapshot_diff(
    databricks: FakeDatabricks, store: DuckDBStore
) -> None:
    databricks.create_table("users", COLUMNS, [user(10001, "cto"), user(10002)])
    databricks.create_table(
        "titles",
        {"title": "string", "level": "int"},
        [{"title": "cto", "level": 9}, {"title": "analyst", "level": 2}],
    )
    query = "SELECT u.uid AS user_id, t.level AS `Level` FROM crm.users u JOIN crm.titles t ON t.title = u.title"
    add_source(store, "levels", "dbx", query=query, strategy="diff")
    assert run_sync(store, "levels")["inserted"] == 2
    databricks.update("titles", "title", "analyst", {"level": 3})
    assert run_sync(store, "levels")["updated"] == 1
    assert profiles(store) == {"10001": {"Level": 9}, "10002": {"Level": 3}}


def test_list_tables_names_them_schema_dot_table(
    databricks: FakeDatabricks, store: DuckDBStore
) -> None:
    databricks.create_table("users", COLUMNS, [])
    databricks.create_table("plan types", {"id": "int"}, [])
    source = DatabricksWarehouse(store.get_connection("dbx"))
    try:
        assert source.list_tables() == ["crm.`plan types`", "crm.users"]
    finally:
        source.close()


def test_config_needs_host_path_token_and_catalog() -> None:
    with pytest.raises(ConfigurationError, match="needs http_path, access_token"):
        validate_config("databricks", {"server_hostname": "h", "catalog": "main"})
    config = validate_config("databricks", dict(DATABRICKS_CONFIG))
    assert config["server_hostname"] == "dbc-1234abcd-5678.cloud.databricks.com"
    assert DatabricksWarehouse.secret_fields == ("access_token",)


def test_without_the_connector_the_error_gives_the_pip_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "databricks", None)
    source = DatabricksWarehouse(Connection("dbx", "databricks", dict(DATABRICKS_CONFIG)))
    with pytest.raises(MissingDependencyError, match=r'pip install "profilesync\[databricks\]"'):
        source.list_tables()
