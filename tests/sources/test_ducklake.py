"""The DuckLake source against real lakes: CDC between snapshot ids, identity, expiry, checks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from profilesync.errors import (
    ConfigurationError,
    MissingDependencyError,
    RetentionExceededError,
    TableReplacedError,
    WarehouseUnavailableError,
)
from profilesync.model import Connection, parse_frequency
from profilesync.store.duckdb import DuckDBStore
from profilesync.sync import engine
from profilesync.warehouses import open_warehouse
from profilesync.warehouses.ducklake.warehouse import DuckLakeWarehouse, extension_file
from tests.conftest import Cli
from tests.sources.conftest import USERS, Lake, add_source, connect, profiles, user, writer_process


@pytest.fixture
def synced(lake: Lake, store: DuckDBStore) -> Lake:
    """Table ``main.users`` with three users, source ``users`` over it, first sync done."""
    lake.create_table("users", USERS, [user("alice-1"), user("bob-22", "free", 3), user("carol-3")])
    connect(store, lake)
    add_source(store, "users", table="main.users")
    engine.sync(store, "users")
    return lake


def checks(store: DuckDBStore, name: str) -> dict[str, tuple[str, str, str | None]]:
    report = engine.test_mapping(store, store.get_source(name))
    return {c["name"]: (c["level"], c["message"], c["fix_sql"]) for c in report["checks"]}


# -- setup ----------------------------------------------------------------------------


def test_extension_is_loaded_from_the_wheel_and_nothing_is_fetched(lake: Lake) -> None:
    lake.create_table("users", USERS, [user("alice-1")])
    source = DuckLakeWarehouse(Connection("wh", "ducklake", lake.connection_config()))
    try:
        settings = source.con.execute(
            "SELECT current_setting('autoinstall_known_extensions'), "
            "current_setting('autoload_known_extensions')"
        ).fetchone()
        assert settings == (False, False)
        loaded = source.con.execute(
            "SELECT install_path FROM duckdb_extensions() WHERE extension_name = 'ducklake' AND loaded"
        ).fetchall()
        assert loaded, "the ducklake extension is not loaded"
        assert source.list_tables() == ["main.users"]
    finally:
        source.close()
    assert Path(extension_file("ducklake", "duckdb-extension-ducklake")).is_file()


def test_a_missing_extension_package_names_the_extra_to_install() -> None:
    with pytest.raises(MissingDependencyError, match=r'pip install "profilesync\[ducklake\]"'):
        extension_file("ducklake", "duckdb-extension-not-installed")


def test_connection_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="--catalog"):
        DuckLakeWarehouse.validate_config({})
    with pytest.raises(ConfigurationError, match="not a DuckLake catalog file"):
        DuckLakeWarehouse.validate_config({"catalog": str(tmp_path / "nope.ducklake")})
    string = DuckLakeWarehouse.validate_config({"catalog": "ducklake:postgres:dbname=lake host=db"})
    assert string == {"catalog": "postgres:dbname=lake host=db"}


def test_a_writer_holding_the_catalog_is_a_retriable_error_naming_the_cause(
    lake: Lake, store: DuckDBStore
) -> None:
    lake.create_table("users", USERS, [user("alice-1")])
    opens = f"""
        con = duckdb.connect(config={{"allow_unsigned_extensions": True}})
        con.execute("LOAD '{lake.extension}'")
        con.execute("ATTACH 'ducklake:{lake.catalog_file}' AS lake")
    """
    with writer_process(opens):
        source = DuckLakeWarehouse(Connection("wh", "ducklake", lake.connection_config()))
        with pytest.raises(
            WarehouseUnavailableError, match="open for writing in another process"
        ) as exc:
            source.list_tables()
        assert exc.value.retriable


# -- change data capture ----------------------------------------------------------------


def test_inserts_updates_deletes_and_null_outs_are_read_as_changes(
    synced: Lake, store: DuckDBStore
) -> None:
    synced.sql(
        "INSERT INTO users VALUES ('dave-44', 'team', 9, 0.1)",
        "UPDATE users SET plan = 'enterprise' WHERE uid = 'alice-1'",
    )
    synced.sql("UPDATE users SET seats = NULL WHERE uid = 'bob-22'")
    synced.sql("DELETE FROM users WHERE uid = 'carol-3'")
    synced.sql("UPDATE users SET plan = plan WHERE uid = 'dave-44'")  # rewrites the same values
    result = engine.sync(store, "users")
    assert profiles(store) == {
        "alice-1": {"plan": "enterprise", "seats": 1},
        "bob-22": {"plan": "free"},
        "dave-44": {"plan": "team", "seats": 9},
    }
    assert (result.inserted, result.updated, result.deleted, result.unchanged) == (1, 2, 1, 0)
    assert result.operations == 4
    # only the changes were read: 1 insert + 3 updates (pre and post image) + 1 delete
    assert result.read == 1 + 2 * 3 + 1
    source = store.get_source("users")
    assert source.checkpoint is not None
    assert source.checkpoint.position == str(synced.snapshot_id())
    assert source.checkpoint.identity == synced.table_uuid()


def test_a_sync_without_changes_reads_nothing_and_meters_nothing(
    synced: Lake, store: DuckDBStore
) -> None:
    result = engine.sync(store, "users")
    assert (result.read, result.operations, result.mode) == (0, 0, "incremental")


def test_delete_and_reinsert_in_one_snapshot_nets_to_the_new_row(
    synced: Lake, store: DuckDBStore
) -> None:
    synced.sql(
        "DELETE FROM users WHERE uid = 'alice-1'",
        "INSERT INTO users VALUES ('alice-1', 'team', 2, 0.5)",
        "INSERT INTO users VALUES ('erin-55', 'pro', 1, 0.5)",
        "DELETE FROM users WHERE uid = 'erin-55'",
    )
    result = engine.sync(store, "users")
    assert profiles(store)["alice-1"] == {"plan": "team", "seats": 2}
    assert "erin-55" not in profiles(store)
    assert (result.inserted, result.updated, result.deleted) == (0, 1, 0)


def test_a_changed_user_id_deletes_the_old_profile(synced: Lake, store: DuckDBStore) -> None:
    synced.sql("UPDATE users SET uid = 'alice-99' WHERE uid = 'alice-1'")
    engine.sync(store, "users")
    assert "alice-1" not in profiles(store)
    assert profiles(store)["alice-99"] == {"plan": "pro", "seats": 1}


def test_a_column_added_to_the_table_does_not_break_the_stream(
    synced: Lake, store: DuckDBStore
) -> None:
    synced.sql("ALTER TABLE users ADD COLUMN region VARCHAR")
    synced.sql("UPDATE users SET region = 'eu', seats = 4 WHERE uid = 'bob-22'")
    result = engine.sync(store, "users")
    assert profiles(store)["bob-22"] == {"plan": "free", "seats": 4}
    assert result.updated == 1


def test_changes_spread_over_many_snapshots_apply_last_by_commit(
    synced: Lake, store: DuckDBStore
) -> None:
    for seats in range(10, 20):
        synced.sql(f"UPDATE users SET seats = {seats} WHERE uid = 'carol-3'")
    result = engine.sync(store, "users")
    assert profiles(store)["carol-3"]["seats"] == 19
    assert result.operations == 1


# -- drop-and-replace and expired snapshots -----------------------------------------------


def test_drop_and_recreate_is_detected_by_the_table_uuid(synced: Lake, store: DuckDBStore) -> None:
    before = store.get_source("users").checkpoint
    old_uuid = synced.table_uuid()
    synced.replace_table("users", USERS, [user("alice-1"), user("bob-22", "team", 3)])
    # DuckLake's own table_changes would hand back only the new table's rows
    with pytest.raises(TableReplacedError, match=rf"uuid changed from {old_uuid}.*--resync"):
        engine.sync(store, "users")
    assert store.get_source("users").checkpoint == before
    assert len(profiles(store)) == 3
    resync = engine.sync(store, "users", resync=True)
    assert (resync.inserted, resync.updated, resync.deleted, resync.unchanged) == (0, 1, 1, 1)
    assert profiles(store) == {
        "alice-1": {"plan": "pro", "seats": 1},
        "bob-22": {"plan": "team", "seats": 3},
    }
    synced.sql("UPDATE users SET seats = 5 WHERE uid = 'alice-1'")
    assert engine.sync(store, "users").updated == 1  # CDC goes on from the new table


def test_expired_snapshots_fail_the_sync_until_a_resync(synced: Lake, store: DuckDBStore) -> None:
    synced.sql("UPDATE users SET plan = 'team' WHERE uid = 'alice-1'")
    synced.sql("DELETE FROM users WHERE uid = 'bob-22'")
    synced.expire_history("users")
    with pytest.raises(RetentionExceededError, match=r"expire_older_than.*--resync") as exc:
        engine.sync(store, "users")
    assert exc.value.code == "retention_exceeded"
    assert store.runs("users", limit=1)[0]["status"] == "failed"
    assert len(profiles(store)) == 3
    resync = engine.sync(store, "users", resync=True)
    assert (resync.updated, resync.deleted, resync.unchanged) == (1, 1, 1)
    synced.sql("UPDATE users SET seats = 8 WHERE uid = 'carol-3'")
    assert engine.sync(store, "users").updated == 1


def test_one_expired_snapshot_inside_the_window_is_detected(
    synced: Lake, store: DuckDBStore
) -> None:
    synced.sql("UPDATE users SET plan = 'team' WHERE uid = 'alice-1'")
    middle = synced.snapshot_id()
    synced.sql("UPDATE users SET plan = 'free' WHERE uid = 'carol-3'")
    synced.sql(f"CALL ducklake_expire_snapshots('lake', versions => [{middle}])")
    with pytest.raises(RetentionExceededError, match="1 of the snapshots"):
        engine.sync(store, "users")


# -- test mapping -----------------------------------------------------------------------


def test_test_mapping_reports_tracking_and_unset_retention(
    synced: Lake, store: DuckDBStore
) -> None:
    found = checks(store, "users")
    assert found["table"][0] == "pass" and synced.table_uuid() in found["table"][1]
    assert found["change tracking"][0] == "pass"
    assert found["snapshot retention"][0] == "pass"
    assert "no expire_older_than" in found["snapshot retention"][1]


@pytest.mark.parametrize(
    ("value", "frequency", "level"),
    [
        ("1 hour", "12h", "fail"),
        ("2 days", "12h", "warn"),
        ("8 days", "12h", "pass"),
        ("1 day", "2d", "fail"),
    ],
)
def test_snapshot_expiry_setting_is_weighed_against_the_frequency(
    synced: Lake, store: DuckDBStore, value: str, frequency: str, level: str
) -> None:
    synced.sql(f"CALL lake.set_option('expire_older_than', '{value}')")
    store.update_source("users", frequency_seconds=parse_frequency(frequency))
    got, message, fix = checks(store, "users")["snapshot retention"]
    assert got == level
    assert value in message
    if level != "pass":
        assert fix is not None and "expire_older_than" in fix


def test_a_table_scoped_expiry_overrides_the_lake_wide_one(
    synced: Lake, store: DuckDBStore
) -> None:
    synced.sql("CALL lake.set_option('expire_older_than', '30 days')")
    synced.sql("CALL lake.set_option('expire_older_than', '1 hour', table_name => 'users')")
    assert checks(store, "users")["snapshot retention"][0] == "fail"


# -- snapshot diff on a lake --------------------------------------------------------------


def test_a_join_query_runs_in_the_lake_under_diff(lake: Lake, store: DuckDBStore) -> None:
    lake.create_table("users", USERS, [user("alice-1"), user("bob-22", "free")])
    lake.create_table(
        "orgs",
        {"uid": "string", "org": "string"},
        [{"uid": "alice-1", "org": "acme"}, {"uid": "bob-22", "org": "initech"}],
    )
    connect(store, lake)
    query = 'SELECT u.uid AS "user_id", u.plan AS "Plan", o.org AS "Org" FROM main.users u JOIN main.orgs o ON o.uid = u.uid'
    add_source(store, "q", query=query, strategy="diff")
    first = engine.sync(store, "q")
    assert first.inserted == 2 and first.checkpoint == str(lake.snapshot_id())
    lake.sql("UPDATE orgs SET org = 'globex' WHERE uid = 'bob-22'")
    lake.sql("DELETE FROM orgs WHERE uid = 'alice-1'")
    second = engine.sync(store, "q")
    assert profiles(store) == {"bob-22": {"Plan": "free", "Org": "globex"}}
    assert (second.inserted, second.updated, second.deleted, second.unchanged) == (0, 1, 1, 0)
    assert engine.sync(store, "q").operations == 0


def test_cdc_refuses_a_join_query(lake: Lake, store: DuckDBStore) -> None:
    lake.create_table("users", USERS, [user("alice-1")])
    connect(store, lake)
    with pytest.raises(ConfigurationError, match="JOIN"):
        add_source(
            store,
            "q",
            query='SELECT u.uid AS "user_id" FROM main.users u JOIN main.users v ON u.uid = v.uid',
        )


@pytest.fixture(scope="module")
def pg_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from profilesync import pgserver

    server = pgserver.start(tmp_path_factory.mktemp("pg"))
    try:
        yield server.dsn()
    finally:
        server.stop()


@pytest.mark.postgres
def test_a_postgres_catalog_is_read_by_cdc(pg_dsn: str, tmp_path: Path, store: DuckDBStore) -> None:
    data = tmp_path / "data"
    writer = duckdb.connect(config={"allow_unsigned_extensions": True})
    writer.execute(f"LOAD '{extension_file('ducklake', 'duckdb-extension-ducklake')}'")
    writer.execute(
        f"LOAD '{extension_file('postgres_scanner', 'duckdb-extension-postgres-scanner')}'"
    )
    writer.execute(f"ATTACH 'ducklake:postgres:{pg_dsn}' AS lake (DATA_PATH '{data}/')")
    try:
        writer.execute("CREATE TABLE lake.main.users (uid VARCHAR, plan VARCHAR, seats BIGINT)")
        writer.execute(
            "INSERT INTO lake.main.users VALUES ('alice-1', 'pro', 1), ('bob-22', 'free', 2)"
        )
        # a Postgres catalog takes concurrent readers and writers: the writer stays attached
        store.add_connection(
            Connection("wh", "ducklake", {"catalog": f"postgres:{pg_dsn}", "data_path": str(data)})
        )
        add_source(store, "users", table="main.users")
        assert engine.sync(store, "users").inserted == 2
        writer.execute("UPDATE lake.main.users SET plan = 'team' WHERE uid = 'bob-22'")
        writer.execute("DELETE FROM lake.main.users WHERE uid = 'alice-1'")
        result = engine.sync(store, "users")
    finally:
        writer.close()
    assert profiles(store) == {"bob-22": {"plan": "team", "seats": 2}}
    assert (result.updated, result.deleted, result.read) == (1, 1, 3)


def test_an_unreachable_postgres_catalog_is_a_configuration_error_not_a_download() -> None:
    source = open_warehouse(
        Connection(
            "wh",
            "ducklake",
            {"catalog": "postgres:dbname=lake host=127.0.0.1 port=1 connect_timeout=1"},
        )
    )
    try:
        with pytest.raises(ConfigurationError, match="cannot attach") as exc:
            source.list_tables()
        assert "INSTALL" not in str(exc.value)
    finally:
        source.close()


def test_a_view_syncs_by_diff_and_is_refused_for_cdc(lake: Lake, store: DuckDBStore) -> None:
    lake.create_table("users", USERS, [user("alice-1"), user("bob-22", "free")])
    lake.sql("CREATE VIEW paying AS SELECT * FROM users WHERE plan <> 'free'")
    connect(store, lake)
    add_source(store, "v", table="main.paying", strategy="diff")
    assert engine.sync(store, "v").inserted == 1
    lake.sql("UPDATE users SET plan = 'team' WHERE uid = 'bob-22'")
    assert engine.sync(store, "v").inserted == 1
    assert set(profiles(store)) == {"alice-1", "bob-22"}
    add_source(store, "c", table="main.paying", props=[("seats", "Seats")])
    found = checks(store, "c")
    assert found["change tracking"][0] == "fail"
    assert "--strategy diff" in found["change tracking"][1]


def test_cli_cdc_flow_end_to_end(lake: Lake, cli: Cli) -> None:
    lake.create_table("users", USERS, [user("alice-1"), user("bob-22", "free", 3)])
    config = lake.connection_config()
    cli.ok(
        "connection",
        "add",
        "lk",
        "--kind",
        "ducklake",
        "--catalog",
        config["catalog"],
        "--data-path",
        config["data_path"],
    )
    added = cli.ok(
        "source",
        "add",
        "s",
        "--connection",
        "lk",
        "--table",
        "main.users",
        "--user-id",
        "uid",
        "--property",
        "plan",
    )
    assert "snapshot retention" in added.stdout
    assert cli.json("sync", "s")["checkpoint"] == str(lake.snapshot_id())
    lake.sql("UPDATE users SET plan = 'team' WHERE uid = 'bob-22'")
    second = cli.json("sync", "s")
    assert (second["mode"], second["read"], second["updated"], second["operations"]) == (
        "incremental",
        2,
        1,
        1,
    )


def test_a_data_file_removed_under_the_checkpoint_is_lost_history(
    synced: Lake, store: DuckDBStore
) -> None:
    before = set(synced.data_path.rglob("*.parquet"))
    synced.sql("INSERT INTO users SELECT 'bulk-' || i, 'free', i, 0.5 FROM range(20000) t(i)")
    written = set(synced.data_path.rglob("*.parquet")) - before
    assert written, "the bulk insert was inlined into the catalog instead of a data file"
    for path in written:
        path.unlink()  # what a too-eager cleanup job does
    with pytest.raises(RetentionExceededError, match="--resync"):
        engine.sync(store, "users")
    assert len(profiles(store)) == 3
