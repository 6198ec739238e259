"""The DESIGN.md semantics contract, line by line, on real Delta tables and a real store, on
every store backend (the DuckDB file, and chdb when the clickhouse extra is installed).

Each test names the semantics line it pins. A test syncs, changes the warehouse with
delta-rs (``update``/``delete``/``append``/``alter``), syncs again and compares what a
user would see: profiles, counts, operations metered, run history and error messages.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from profilesync.engine import sync as engine
from profilesync.errors import (
    ChangeTrackingError,
    ConcurrentSyncError,
    ConfigurationError,
    InternalError,
    NeedsResyncError,
    NotFoundError,
    QuotaExceededError,
    RetentionExceededError,
    TableReplacedError,
)
from profilesync.store import DuckDBStore
from tests.conftest import (
    Cli,
    Warehouse,
    expected,
    profiles,
    query_source,
    run_sync,
    table_source,
    usage_total,
    users_table,
)

PROPS = [("title", "Title"), ("score", "Score"), ("active", "Active")]


@pytest.fixture(params=["duckdb", "chdb"])
def backend(request: pytest.FixtureRequest) -> str:
    """Every line of the contract holds on each store backend."""
    if request.param == "chdb":
        pytest.importorskip("chdb", reason="needs the clickhouse extra: pip install .[clickhouse]")
    return str(request.param)


@pytest.fixture
def users(warehouse: Warehouse, store: DuckDBStore) -> Warehouse:
    """Five users in ``prod.users`` (CDF on), a source ``users`` over it, first sync done."""
    warehouse.create("prod.users", users_table(5))
    table_source(store, "users", "prod.users", "uid", PROPS)
    first = run_sync(store, "users")
    assert (first["mode"], first["inserted"], first["operations"]) == ("initial", 5, 5)
    return warehouse


def assert_store_equals_warehouse(store: DuckDBStore, warehouse: Warehouse) -> None:
    assert profiles(store) == expected(warehouse.rows("prod.users"), "uid", PROPS)


def checkpoint(store: DuckDBStore, name: str = "users") -> str | None:
    cp = store.get_source(name).checkpoint
    return cp.position if cp else None


# -- 1. user_id validation ---------------------------------------------------------------


def test_integer_user_ids_become_decimal_strings(users: Warehouse, store: DuckDBStore) -> None:
    assert sorted(profiles(store)) == ["10001", "10002", "10003", "10004", "10005"]
    assert store.get_profile("10003")["properties"]["Title"] == "title-10003"


def test_short_null_and_mistyped_user_ids_are_rejected_and_the_rest_applied(
    warehouse: Warehouse, store: DuckDBStore
) -> None:
    warehouse.create(
        "crm.people",
        {"id": ["alice-1", "bob-22", "abc", None], "plan": ["pro", "free", "pro", "free"]},
    )
    table_source(store, "people", "crm.people", "id", [("plan", "Plan")])
    result = run_sync(store, "people")
    assert (result["inserted"], result["rejected"], result["operations"]) == (2, 2, 2)
    assert profiles(store) == {"alice-1": {"Plan": "pro"}, "bob-22": {"Plan": "free"}}
    run = store.runs("people")[0]
    rejected = store.rejected_rows(run["id"])
    reasons = sorted(r["reason"] for r in rejected)
    assert reasons[0] == 'user_id "abc" is shorter than 5 characters'
    assert reasons[1] == "user_id is null"
    assert {r["row"]["Plan"] for r in rejected} == {"pro", "free"}

    # a later change with a bad id is rejected too, while the good ones in it apply
    warehouse.append("crm.people", {"id": ["x", "carol-3"], "plan": ["pro", "team"]})
    result = run_sync(store, "people")
    assert (result["inserted"], result["rejected"]) == (1, 1)
    assert profiles(store)["carol-3"] == {"Plan": "team"}


def test_user_id_of_another_type_is_rejected_with_its_type(
    warehouse: Warehouse, store: DuckDBStore
) -> None:
    warehouse.create("crm.floats", {"id": [12345.5, 67890.0], "plan": ["a", "b"]})
    table_source(store, "floats", "crm.floats", "id", [("plan", "Plan")])
    result = run_sync(store, "floats")
    assert (result["inserted"], result["rejected"]) == (0, 2)
    reasons = {r["reason"] for r in store.rejected_rows(store.runs("floats")[0]["id"])}
    assert all("DOUBLE" in r and "expected a string or an integer" in r for r in reasons)


# -- 2. insert, update, delete -----------------------------------------------------------


def test_insert_creates_the_users_row(users: Warehouse, store: DuckDBStore) -> None:
    users.append("prod.users", users_table(2, start=20_001))
    result = run_sync(store, "users")
    assert (result["mode"], result["inserted"], result["updated"], result["deleted"]) == (
        "incremental",
        2,
        0,
        0,
    )
    assert result["operations"] == 2
    assert store.get_profile("20001")["properties"] == {
        "Title": "title-20001",
        "Score": 200.01,
        "Active": False,
    }
    assert_store_equals_warehouse(store, users)


def test_update_replaces_the_values(users: Warehouse, store: DuckDBStore) -> None:
    users.update("prod.users", "uid = 10002", {"title": "'Head of Data'", "score": "0.5"})
    result = run_sync(store, "users")
    assert (result["inserted"], result["updated"], result["deleted"], result["operations"]) == (
        0,
        1,
        0,
        1,
    )
    assert store.get_profile("10002")["properties"] == {
        "Title": "Head of Data",
        "Score": 0.5,
        "Active": True,
    }
    assert_store_equals_warehouse(store, users)


def test_update_of_an_unmapped_column_is_not_an_operation(
    warehouse: Warehouse, store: DuckDBStore
) -> None:
    warehouse.create("prod.users", users_table(3))
    table_source(store, "users", "prod.users", "uid", [("title", "Title")])
    run_sync(store, "users")
    warehouse.update("prod.users", "uid = 10001", {"score": "99.0"})
    result = run_sync(store, "users")
    assert (result["updated"], result["unchanged"], result["operations"]) == (0, 1, 0)


def test_delete_removes_every_property_the_source_gave(
    users: Warehouse, store: DuckDBStore
) -> None:
    users.create("ml.scores", {"user_id": ["10001", "10002"], "churn": [0.1, 0.2]})
    table_source(store, "scores", "ml.scores", "user_id", [("churn", "Churn")])
    run_sync(store, "scores")
    users.delete("prod.users", "uid = 10001")
    users.delete("prod.users", "uid = 10003")
    result = run_sync(store, "users")
    assert (result["deleted"], result["operations"]) == (2, 2)
    # 10001 keeps the other source's property; 10003 had only this source: no profile left
    assert store.get_profile("10001")["properties"] == {"Churn": 0.1}
    with pytest.raises(NotFoundError, match="no source has a current row"):
        store.get_profile("10003")
    assert "10003" not in profiles(store)


def test_changing_the_user_id_column_moves_the_row(users: Warehouse, store: DuckDBStore) -> None:
    users.update("prod.users", "uid = 10004", {"uid": "40004"})
    result = run_sync(store, "users")
    assert (result["inserted"], result["deleted"]) == (1, 1)
    assert_store_equals_warehouse(store, users)


# -- 3. NULL-out ---------------------------------------------------------------------


def test_a_value_set_to_null_is_removed_from_the_profile(
    users: Warehouse, store: DuckDBStore
) -> None:
    users.update("prod.users", "uid = 10005", {"title": "NULL"})
    result = run_sync(store, "users")
    assert (result["updated"], result["operations"]) == (1, 1)
    assert store.get_profile("10005")["properties"] == {"Score": 100.05, "Active": False}
    users.update("prod.users", "uid = 10005", {"score": "NULL", "active": "NULL"})
    run_sync(store, "users")
    # the row still exists in the warehouse: the profile exists with no properties
    assert store.get_profile("10005") == {"user_id": "10005", "properties": {}}


# -- 4. net result per user inside one window ------------------------------------------


def test_insert_then_delete_in_one_window_is_nothing(users: Warehouse, store: DuckDBStore) -> None:
    users.append("prod.users", users_table(1, start=30_001))
    users.delete("prod.users", "uid = 30001")
    result = run_sync(store, "users")
    assert result["operations"] == 0
    assert "30001" not in profiles(store)
    assert usage_total(store) == 5


def test_several_commits_between_syncs_collapse_to_the_net_change(
    users: Warehouse, store: DuckDBStore
) -> None:
    users.update("prod.users", "uid = 10001", {"title": "'first'"})
    users.update("prod.users", "uid = 10001", {"title": "'second'"})
    users.update("prod.users", "uid = 10001", {"title": "'third'"})
    users.delete("prod.users", "uid = 10002")
    users.append("prod.users", users_table(1, start=10_002))  # deleted, then back
    users.update("prod.users", "uid = 10003", {"title": "'gone soon'"})
    users.delete("prod.users", "uid = 10003")
    users.append("prod.users", users_table(2, start=50_001))
    users.update("prod.users", "uid = 50001", {"score": "1.5"})
    result = run_sync(store, "users")
    assert result["read"] > result["operations"]
    # 10001 updated once (net), 10002 back as it was (no-op), 10003 deleted, 2 inserted
    assert (result["inserted"], result["updated"], result["deleted"]) == (2, 1, 1)
    assert result["operations"] == 4
    assert store.get_profile("10001")["properties"]["Title"] == "third"
    assert store.get_profile("50001")["properties"]["Score"] == 1.5
    assert_store_equals_warehouse(store, users)
    assert usage_total(store) == 5 + 4


# -- 5/6. checkpoints -----------------------------------------------------------------


def test_checkpoint_is_the_version_read_and_a_quiet_table_costs_nothing(
    users: Warehouse, store: DuckDBStore
) -> None:
    assert checkpoint(store) == str(users.dt("prod.users").version())
    again = run_sync(store, "users")
    assert (again["operations"], again["read"]) == (0, 0)
    users.update("prod.users", "uid = 10001", {"title": "'x'"})
    result = run_sync(store, "users")
    assert (result["previous_checkpoint"], result["checkpoint"]) == ("0", "1")
    assert checkpoint(store) == "1"
    # the change is applied once: the next sync reads nothing
    assert run_sync(store, "users")["read"] == 0


def test_a_change_made_while_the_snapshot_is_read_comes_with_the_next_sync(
    warehouse: Warehouse, store: DuckDBStore
) -> None:
    warehouse.create("prod.users", users_table(3))
    table_source(store, "users", "prod.users", "uid", PROPS)
    changed: list[int] = []

    def change_while_reading(stage: str, rows: int) -> None:
        if stage == "reading" and not changed:
            warehouse.update("prod.users", "uid = 10001", {"title": "'during'"})
            changed.append(rows)

    first = engine.sync(store, "users", progress=change_while_reading)
    assert changed and first.checkpoint == "0"
    assert store.get_profile("10001")["properties"]["Title"] == "title-10001"
    assert run_sync(store, "users")["updated"] == 1
    assert_store_equals_warehouse(store, warehouse)


def test_an_in_place_overwrite_is_metered_as_its_real_differences(
    users: Warehouse, store: DuckDBStore
) -> None:
    # a dbt "table" model overwrites every file; the feed shows every row deleted and inserted
    rows = users_table(6).to_pylist()
    rows[0]["title"] = "changed"
    del rows[1]
    write_deltalake(
        users.path("prod.users"),
        pa.Table.from_pylist(rows, schema=users_table(1).schema),
        mode="overwrite",
    )
    result = run_sync(store, "users")
    assert result["read"] >= 10
    assert (result["inserted"], result["updated"], result["deleted"], result["unchanged"]) == (
        1,
        1,
        1,
        3,
    )
    assert_store_equals_warehouse(store, users)


# -- 7. typed values -----------------------------------------------------------------


def test_values_keep_their_types(warehouse: Warehouse, store: DuckDBStore) -> None:
    seen = datetime(2024, 3, 4, 5, 6, 7, 123000, tzinfo=UTC)
    warehouse.create(
        "crm.typed",
        pa.table(
            {
                "id": ["typed-1"],
                "n": pa.array([42], pa.int64()),
                "f": pa.array([0.1 + 0.2], pa.float64()),
                "b": [False],
                "ts": pa.array([seen], pa.timestamp("us", tz="UTC")),
                "s": ["007"],
            }
        ),
    )
    props = [("n", "N"), ("f", "F"), ("b", "B"), ("ts", "Seen"), ("s", "S")]
    table_source(store, "typed", "crm.typed", "id", props)
    run_sync(store, "typed")
    got = store.get_profile("typed-1")["properties"]
    assert got == {
        "N": 42,
        "F": 0.30000000000000004,
        "B": False,
        "Seen": "2024-03-04T05:06:07.123000Z",
        "S": "007",
    }
    assert [type(got[k]) for k in ("N", "F", "B", "S")] == [int, float, bool, str]
    # and after an incremental change read from the change data feed
    warehouse.update("crm.typed", "id = 'typed-1'", {"b": "true", "n": "43"})
    run_sync(store, "typed")
    got = store.get_profile("typed-1")["properties"]
    assert (got["B"], got["N"], got["Seen"]) == (True, 43, "2024-03-04T05:06:07.123000Z")
    assert json.loads(json.dumps(got))["B"] is True


# -- display names and the query form ------------------------------------------------


def test_display_names_become_the_property_names(warehouse: Warehouse, store: DuckDBStore) -> None:
    warehouse.create("prod.users", users_table(1))
    table_source(store, "users", "prod.users", "uid", [("title", "Job Title"), ("score", "score")])
    run_sync(store, "users")
    assert store.get_profile("10001")["properties"] == {"Job Title": "title-10001", "score": 100.01}


def test_query_form_with_where_follows_rows_in_and_out_of_the_filter(
    warehouse: Warehouse, store: DuckDBStore
) -> None:
    warehouse.create("prod.users", users_table(4))  # 10002 and 10004 are active
    query_source(
        store,
        "active",
        'SELECT u.uid AS "user_id", upper(u.title) AS "Title", score * 2 AS "Double Score" '
        "FROM prod.users AS u WHERE u.active = true",
    )
    first = run_sync(store, "active")
    assert first["inserted"] == 2
    assert profiles(store) == {
        "10002": {"Title": "TITLE-10002", "Double Score": 200.04},
        "10004": {"Title": "TITLE-10004", "Double Score": 200.08},
    }
    warehouse.update("prod.users", "uid = 10002", {"active": "false"})  # stops matching
    warehouse.update("prod.users", "uid = 10003", {"active": "true"})  # starts matching
    warehouse.update("prod.users", "uid = 10001", {"title": "'ignored'"})  # never matches
    result = run_sync(store, "active")
    assert (result["inserted"], result["updated"], result["deleted"]) == (1, 0, 1)
    assert sorted(profiles(store)) == ["10003", "10004"]
    assert profiles(store)["10003"]["Title"] == "TITLE-10003"


def test_column_names_that_need_quoting_are_read_from_snapshot_and_feed(
    warehouse: Warehouse, store: DuckDBStore
) -> None:
    warehouse.create(
        "crm.people",
        {"User ID": ["user-1"], "planName": ["pro"], "Plan.Tier": ["gold"], 'say "hi"': ["x"]},
    )
    table_source(
        store,
        "people",
        "crm.people",
        "User ID",
        [("planName", "Plan"), ("Plan.Tier", "Tier (current)"), ('say "hi"', 'Said "hi"')],
    )
    run_sync(store, "people")
    warehouse.update("crm.people", "\"User ID\" = 'user-1'", {'"planName"': "'team'"})
    assert run_sync(store, "people")["updated"] == 1
    assert store.get_profile("user-1")["properties"] == {
        "Plan": "team",
        "Tier (current)": "gold",
        'Said "hi"': "x",
    }


def test_a_mapped_column_dropped_from_the_table_is_a_mapping_error(
    users: Warehouse, store: DuckDBStore
) -> None:
    write_deltalake(
        users.path("prod.users"),
        users_table(5).drop_columns(["score"]),
        mode="overwrite",
        schema_mode="overwrite",
    )
    with pytest.raises(ConfigurationError, match="no longer has column\\(s\\) score") as info:
        run_sync(store, "users")
    assert not isinstance(info.value, NeedsResyncError)
    assert checkpoint(store) == "0"


# -- change tracking ------------------------------------------------------------------


def test_cdf_not_enabled_is_refused_with_the_fix(warehouse: Warehouse, store: DuckDBStore) -> None:
    warehouse.create("prod.users", users_table(2), cdf=False)
    source = table_source(store, "users", "prod.users", "uid", PROPS)
    report = engine.test_mapping(store, source)
    assert not report["ok"]
    cdf = next(c for c in report["checks"] if c["name"] == "change data feed")
    assert cdf["level"] == "fail"
    assert "delta.enableChangeDataFeed" in cdf["message"]
    assert cdf["fix_sql"] == (
        f"ALTER TABLE delta.`{warehouse.root.resolve() / 'prod' / 'users'}` "
        "SET TBLPROPERTIES (delta.enableChangeDataFeed = true)"
    )
    # every sync checks too: a CDC source's first sync is refused before anything is read
    with pytest.raises(ChangeTrackingError, match=r"delta\.enableChangeDataFeed is not enabled"):
        run_sync(store, "users")
    assert store.get_source("users").checkpoint is None
    assert profiles(store) == {}
    assert store.runs("users")[0]["status"] == "failed"
    # a source that started as a diff and switched to CDC meets the same check on every sync
    store.update_source("users", strategy="diff")
    run_sync(store, "users")
    store.update_source("users", strategy="cdc")
    warehouse.update("prod.users", "uid = 10001", {"title": "'x'"})
    with pytest.raises(ChangeTrackingError, match=r"delta\.enableChangeDataFeed is off"):
        run_sync(store, "users")
    assert checkpoint(store) == "0"


def test_cdf_enabled_after_the_checkpoint_is_refused(
    warehouse: Warehouse, store: DuckDBStore
) -> None:
    warehouse.create("prod.users", users_table(3), cdf=False)
    table_source(store, "users", "prod.users", "uid", PROPS)
    store.update_source("users", strategy="diff")  # started as a snapshot diff ...
    run_sync(store, "users")  # checkpoint at version 0
    store.update_source("users", strategy="cdc")  # ... then switched to CDC
    warehouse.update("prod.users", "uid = 10001", {"title": "'lost'"})  # v1, not recorded
    warehouse.dt("prod.users").alter.set_table_properties(
        {"delta.enableChangeDataFeed": "true"}
    )  # v2
    warehouse.update("prod.users", "uid = 10002", {"title": "'seen'"})  # v3
    with pytest.raises(RetentionExceededError, match="enabled at version 2") as info:
        run_sync(store, "users")
    assert "--resync" in str(info.value)
    assert profiles(store)["10001"]["Title"] == "title-10001"
    assert checkpoint(store) == "0"
    result = run_sync(store, "users", resync=True)
    assert (result["mode"], result["updated"], result["operations"]) == ("resync", 2, 2)
    assert_store_equals_warehouse(store, warehouse)
    # from the resync on, changes flow from the feed
    warehouse.update("prod.users", "uid = 10003", {"title": "'fed'"})
    assert run_sync(store, "users")["updated"] == 1


def test_cdf_switched_off_and_on_again_after_the_checkpoint_is_refused(
    users: Warehouse, store: DuckDBStore
) -> None:
    alter = users.dt("prod.users").alter
    alter.set_table_properties({"delta.enableChangeDataFeed": "false"})  # v1
    users.update("prod.users", "uid = 10001", {"title": "'unrecorded'"})  # v2
    users.dt("prod.users").alter.set_table_properties({"delta.enableChangeDataFeed": "true"})
    users.update("prod.users", "uid = 10002", {"title": "'recorded'"})  # v4
    with pytest.raises(RetentionExceededError, match="enabled at version 3"):
        run_sync(store, "users")
    assert checkpoint(store) == "0"


def test_cdf_enabled_right_after_the_checkpoint_loses_nothing(
    warehouse: Warehouse, store: DuckDBStore
) -> None:
    warehouse.create("prod.users", users_table(2), cdf=False)
    table_source(store, "users", "prod.users", "uid", PROPS)
    store.update_source("users", strategy="diff")
    run_sync(store, "users")  # checkpoint at version 0
    store.update_source("users", strategy="cdc")
    warehouse.dt("prod.users").alter.set_table_properties({"delta.enableChangeDataFeed": "true"})
    warehouse.update("prod.users", "uid = 10001", {"title": "'fed'"})
    assert run_sync(store, "users")["updated"] == 1
    assert_store_equals_warehouse(store, warehouse)


@pytest.mark.parametrize(
    ("retention", "level"),
    [("interval 30 days", "pass"), ("interval 2 days", "warn"), ("interval 1 hours", "fail")],
)
def test_test_mapping_weighs_retention_against_the_frequency(
    warehouse: Warehouse, store: DuckDBStore, retention: str, level: str
) -> None:
    # the source syncs every 12 hours (the default)
    warehouse.create("prod.users", users_table(1), **{"delta.logRetentionDuration": retention})
    source = table_source(store, "users", "prod.users", "uid", PROPS)
    report = engine.test_mapping(store, source)
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["delta.logRetentionDuration"]["level"] == level
    assert report["ok"] is (level != "fail")
    assert report["preview"][0] == {
        "user_id": "10001",
        "Title": "title-10001",
        "Score": 100.01,
        "Active": False,
    }


# -- 9. drop-and-replace --------------------------------------------------------------


def test_drop_and_replace_is_detected_and_resync_applies_only_real_differences(
    users: Warehouse, store: DuckDBStore
) -> None:
    users.update("prod.users", "uid = 10001", {"title": "'v1'"})
    users.update("prod.users", "uid = 10002", {"title": "'v2'"})
    run_sync(store, "users")  # checkpoint at version 2
    before, used = profiles(store), usage_total(store)
    # a dbt full refresh: the table is dropped and written anew (new id, version 0)
    shutil.rmtree(users.path("prod.users"))
    table = users_table(5).to_pylist()
    table[0]["title"] = "v1"  # same as the store
    table[1]["title"] = "rebuilt"  # a real update
    del table[4]  # 10005 is gone
    table.append({"uid": 60_001, "title": "new", "score": 1.0, "active": True})
    users.create("prod.users", pa.Table.from_pylist(table, schema=users_table(1).schema))
    with pytest.raises(TableReplacedError) as info:
        run_sync(store, "users")
    message = str(info.value)
    for words in (
        "dbt full refresh",
        "CREATE OR REPLACE",
        "sync users --resync",
        "Nothing was applied",
    ):
        assert words in message
    assert profiles(store) == before
    assert checkpoint(store) == "2"
    assert usage_total(store) == used
    failed = store.runs("users")[0]
    assert (failed["status"], failed["error_code"]) == ("failed", "table_replaced")

    result = run_sync(store, "users", resync=True)
    assert (result["inserted"], result["updated"], result["deleted"], result["unchanged"]) == (
        1,
        1,
        1,
        3,
    )
    assert result["operations"] == 3
    assert usage_total(store) == used + 3
    assert_store_equals_warehouse(store, users)
    # the new table's identity is the checkpoint now: CDC continues
    users.update("prod.users", "uid = 60001", {"title": "'next'"})
    assert run_sync(store, "users")["updated"] == 1


def test_create_or_replace_in_place_is_detected(users: Warehouse, store: DuckDBStore) -> None:
    # the table directory and its history stay; the replace writes a new table id
    DeltaTable.create(
        users.path("prod.users"),
        users_table(1).schema,
        mode="overwrite",
        configuration={"delta.enableChangeDataFeed": "true"},
    )
    users.append("prod.users", users_table(2))
    with pytest.raises(TableReplacedError, match="CREATE OR REPLACE"):
        run_sync(store, "users")
    assert len(profiles(store)) == 5
    result = run_sync(store, "users", resync=True)
    assert (result["deleted"], result["unchanged"], result["operations"]) == (3, 2, 3)
    assert_store_equals_warehouse(store, users)


# -- 10. expired history -------------------------------------------------------------


def test_log_cleanup_past_the_checkpoint_is_detected(
    warehouse: Warehouse, store: DuckDBStore
) -> None:
    warehouse.create("prod.users", users_table(3))
    table_source(store, "users", "prod.users", "uid", PROPS)
    run_sync(store, "users")
    # someone shortens the log retention below the sync frequency after the source started
    warehouse.dt("prod.users").alter.set_table_properties(
        {"delta.logRetentionDuration": "interval 0 seconds"}
    )
    for uid in (10001, 10002, 10003):
        warehouse.update("prod.users", f"uid = {uid}", {"title": "'changed'"})
    dt = warehouse.dt("prod.users")
    dt.create_checkpoint()
    time.sleep(1.1)
    dt.cleanup_metadata()
    with pytest.raises(RetentionExceededError) as info:
        run_sync(store, "users")
    message = str(info.value)
    assert "delta.logRetentionDuration" in message and "--resync" in message
    assert all(p["Title"].startswith("title-") for p in profiles(store).values())
    assert run_sync(store, "users", resync=True)["updated"] == 3
    assert_store_equals_warehouse(store, warehouse)


def test_vacuumed_change_files_are_detected(users: Warehouse, store: DuckDBStore) -> None:
    users.append("prod.users", users_table(2, start=70_001))  # v1: a new file
    users.delete("prod.users", "uid >= 70001")  # v2: that file is removed
    users.dt("prod.users").vacuum(
        retention_hours=0, enforce_retention_duration=False, dry_run=False
    )
    with pytest.raises(RetentionExceededError) as info:
        run_sync(store, "users")
    message = str(info.value)
    assert "delta.deletedFileRetentionDuration" in message and "--resync" in message
    assert checkpoint(store) == "0"
    result = run_sync(store, "users", resync=True)
    assert result["operations"] == 0
    assert_store_equals_warehouse(store, users)


# -- 11. quota ---------------------------------------------------------------------


def test_quota_refusal_applies_nothing_and_the_changes_wait(
    users: Warehouse, store: DuckDBStore
) -> None:
    store.set_setting("operations_limit", "7")
    users.update("prod.users", "uid <= 10003", {"title": "'promoted'"})
    before = profiles(store)
    with pytest.raises(QuotaExceededError) as info:
        run_sync(store, "users")
    message = str(info.value)
    assert "3 operations" in message and "5 of the growth plan's 7" in message
    assert "would reach 8" in message and "Nothing was applied" in message
    assert profiles(store) == before
    assert checkpoint(store) == "0"
    assert usage_total(store) == 5
    assert store.runs("users")[0]["error_code"] == "quota_exceeded"
    store.set_setting("operations_limit", "8")
    assert run_sync(store, "users")["updated"] == 3
    assert_store_equals_warehouse(store, users)
    assert store.usage()["remaining"] == 0


def test_first_sync_over_the_quota_creates_nothing(
    warehouse: Warehouse, store: DuckDBStore
) -> None:
    store.set_setting("operations_limit", "4")
    warehouse.create("prod.users", users_table(5))
    table_source(store, "users", "prod.users", "uid", PROPS)
    with pytest.raises(QuotaExceededError, match="would reach 5"):
        run_sync(store, "users")
    assert profiles(store) == {}
    assert checkpoint(store) is None


# -- atomicity across processes: one sync of a source at a time ----------------------


def test_a_second_sync_of_the_same_source_is_refused(users: Warehouse, store: DuckDBStore) -> None:
    with engine.source_lock(store, "users"), pytest.raises(ConcurrentSyncError) as info:
        run_sync(store, "users")
    assert "already running" in str(info.value)
    assert run_sync(store, "users")["status"] == "success"  # released afterwards


def test_a_sync_in_another_process_holds_the_source(
    users: Warehouse, store: DuckDBStore, tmp_path: Path
) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from profilesync.engine.locks import source_lock\n"
            "with source_lock(sys.argv[1], 'users'):\n"
            "    print('held', flush=True); sys.stdin.readline()",
            str(store.home),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(ConcurrentSyncError, match=f"PID {holder.pid}"):
            run_sync(store, "users")
        # the CLI is refused at once too, not after waiting for the store file this process holds
        started = time.monotonic()
        proc = Cli(store.home, tmp_path)("sync", "users")
        assert proc.returncode == 1
        assert f"already running (PID {holder.pid})" in proc.stderr
        assert time.monotonic() - started < 8
    finally:
        holder.communicate("\n", timeout=30)
    users.update("prod.users", "uid = 10001", {"title": "'after'"})
    assert run_sync(store, "users")["updated"] == 1


# -- 8. property names, and deleting a source ---------------------------------------


def test_property_names_are_unique_across_sources(users: Warehouse, store: DuckDBStore) -> None:
    users.create("ml.scores", {"user_id": ["10001"], "title": ["clash"]})
    with pytest.raises(ConfigurationError, match=r"'Title' \(from source 'users'\)"):
        table_source(store, "scores", "ml.scores", "user_id", [("title", "Title")])
    table_source(store, "scores", "ml.scores", "user_id", [("title", "Model Title")])
    run_sync(store, "scores")
    assert store.get_profile("10001")["properties"]["Model Title"] == "clash"


def test_source_delete_removes_its_properties(users: Warehouse, store: DuckDBStore) -> None:
    users.create("ml.scores", {"user_id": ["10001", "99999"], "churn": [0.1, 0.9]})
    table_source(store, "scores", "ml.scores", "user_id", [("churn", "Churn")])
    run_sync(store, "scores")
    assert store.get_profile("10001")["properties"]["Churn"] == 0.1
    store.delete_source("scores")
    assert store.get_profile("10001")["properties"] == {
        "Title": "title-10001",
        "Score": 100.01,
        "Active": False,
    }
    with pytest.raises(NotFoundError):
        store.get_profile("99999")
    # the name and the property names are free again
    table_source(store, "scores", "ml.scores", "user_id", [("churn", "Churn")])
    assert run_sync(store, "scores")["inserted"] == 2


# -- failures nobody planned for, and tables whose column types change -------------


def test_an_unexpected_error_is_a_failed_run_and_changes_nothing(
    users: Warehouse, store: DuckDBStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    users.update("prod.users", "uid = 10001", {"title": "'changed'"})
    before = profiles(store)

    def broken(*args: Any) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(store, "_plan", broken)
    with pytest.raises(InternalError, match=r"failed unexpectedly \(RuntimeError: disk on fire\)"):
        run_sync(store, "users")
    last = store.runs("users")[0]
    assert (last["status"], last["error_code"]) == ("failed", "internal")
    assert profiles(store) == before and checkpoint(store) == "0"
    monkeypatch.undo()  # the store is usable again: nothing was left half-done
    assert run_sync(store, "users")["updated"] == 1


def test_a_column_whose_type_changes_asks_for_a_resync_that_recovers(
    users: Warehouse, store: DuckDBStore
) -> None:
    # a rewrite of the table turns `title` into an integer (a dbt model changed its cast)
    table = users_table(5).set_column(1, "title", pa.array(range(5), pa.int64()))
    write_deltalake(users.path("prod.users"), table, mode="overwrite", schema_mode="overwrite")
    with pytest.raises(NeedsResyncError, match=r"changed type.*'title-10001'.*--resync"):
        run_sync(store, "users")
    assert profiles(store)["10001"]["Title"] == "title-10001"
    result = run_sync(store, "users", resync=True)
    assert (result["updated"], result["inserted"], result["deleted"]) == (5, 0, 0)
    assert profiles(store)["10002"]["Title"] == 1
    assert_store_equals_warehouse(store, users)


def test_decimals_nan_and_nested_values_come_out_as_valid_typed_json(
    warehouse: Warehouse, store: DuckDBStore
) -> None:
    from decimal import Decimal

    when = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    warehouse.create(
        "prod.facts",
        pa.table(
            {
                "id": pa.array(
                    [Decimal(12345678901234567890), Decimal(20002)], pa.decimal128(20, 0)
                ),
                "ltv": pa.array([Decimal("1234.50"), Decimal("7")], pa.decimal128(38, 2)),
                "ratio": pa.array([float("nan"), 0.25]),
                "seen": pa.array([[when], []], pa.list_(pa.timestamp("us", tz="UTC"))),
            }
        ),
    )
    table_source(
        store, "facts", "prod.facts", "id", [("ltv", "LTV"), ("ratio", "Ratio"), ("seen", "Seen")]
    )
    assert run_sync(store, "facts")["rejected"] == 0  # whole-number decimal ids are ids
    exported = [json.loads(json.dumps(p, allow_nan=False)) for p in store.export_profiles()]
    assert exported == [
        {
            "user_id": "12345678901234567890",
            "properties": {"LTV": 1234.5, "Seen": ["2024-01-02T03:04:05Z"]},
        },
        {"user_id": "20002", "properties": {"LTV": 7, "Ratio": 0.25, "Seen": []}},
    ]
    assert store.get_profile("12345678901234567890")["properties"] == exported[0]["properties"]


def test_a_source_held_elsewhere_is_not_a_failed_run(
    users: Warehouse, store: DuckDBStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """E.g. a Postgres slot another client reads: this sync never ran, so no run is recorded."""
    from profilesync.sources.delta import DeltaSource

    def held(*args: Any) -> None:
        raise ConcurrentSyncError(
            "replication slot profilesync_users is in use by server process 7"
        )

    monkeypatch.setattr(DeltaSource, "changes", held)
    count = len(store.runs("users"))
    with pytest.raises(ConcurrentSyncError):
        run_sync(store, "users")
    assert len(store.runs("users")) == count
