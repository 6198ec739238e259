"""Test mapping against a real server: every failure names its cause and the SQL to run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from profilesync.mapping import from_columns
from profilesync.model import Connection
from profilesync.store.duckdb import DuckDBStore
from profilesync.sync import engine
from profilesync.warehouses.postgres.checks import wal_level_check
from profilesync.warehouses.postgres.warehouse import PostgresWarehouse
from profilesync.warehouses.protocol import Check
from tests.postgres.conftest import Pg, add_table_source
from tests.postgres_server import invalidate_slots

pytestmark = pytest.mark.postgres
TWELVE_HOURS = 12 * 3600


def run_checks(
    dsn: str, table: str, user_id: str, strategy: str = "cdc", name: str = "users"
) -> dict[str, Check]:
    source = PostgresWarehouse(Connection("pg", "postgres", {"dsn": dsn}), name)
    try:
        mapping = from_columns(table, user_id, [("title", "Title")])
        return {c.name: c for c in source.check(mapping, TWELVE_HOURS, strategy)}
    finally:
        source.close()


def levels(checks: dict[str, Check]) -> dict[str, str]:
    return {name: c.level for name, c in checks.items()}


def test_a_ready_table_passes_and_the_first_sync_will_create_the_slot(pg: Pg) -> None:
    pg.create_users(rows=1)
    checks = run_checks(pg.dsn, "public.users", "uid")
    assert levels(checks) == {
        "table": "pass",
        "privileges": "pass",
        "wal_level": "pass",
        "replication privilege": "pass",
        "replication connection": "pass",
        "replication slot": "info",
        "wal2json": "pass",
        "replica identity": "pass",
        "large values": "info",
        "max_slot_wal_keep_size": "info",
    }
    assert "profilesync_users does not exist yet" in checks["replication slot"].message
    assert "primary key uid" in checks["replica identity"].message
    assert "pg_wal grow" in checks["max_slot_wal_keep_size"].message
    assert pg.slots() == []  # the plugin probe leaves nothing behind


def test_user_id_outside_the_primary_key_asks_for_replica_identity_full(pg: Pg) -> None:
    pg.run("CREATE TABLE accounts (id serial PRIMARY KEY, email text, title text)")
    check = run_checks(pg.dsn, "public.accounts", "email")["replica identity"]
    assert check.level == "fail"
    assert "user_id is read from email" in check.message
    assert check.fix_sql == 'ALTER TABLE "public"."accounts" REPLICA IDENTITY FULL;'
    pg.run(check.fix_sql)
    assert run_checks(pg.dsn, "public.accounts", "email")["replica identity"].level == "pass"


def test_a_table_without_primary_key_or_identity_fails(pg: Pg) -> None:
    pg.run("CREATE TABLE events (uid text, title text)")
    check = run_checks(pg.dsn, "public.events", "uid")["replica identity"]
    assert (check.level, check.fix_sql) == (
        "fail",
        'ALTER TABLE "public"."events" REPLICA IDENTITY FULL;',
    )
    assert "DEFAULT without a primary key" in check.message


def test_a_role_without_replication_or_select_gets_the_grants_to_run(pg: Pg) -> None:
    pg.create_users(rows=1)
    pg.run("CREATE ROLE reader LOGIN")
    dsn = pg.dsn.replace("user=postgres", "user=reader")
    try:
        checks = run_checks(dsn, "public.users", "uid")
        assert checks["privileges"].level == "fail"
        assert checks["privileges"].fix_sql == (
            'GRANT USAGE ON SCHEMA "public" TO "reader"; GRANT SELECT ON "public"."users" TO "reader";'
        )
        assert checks["replication privilege"].level == "fail"
        assert checks["replication privilege"].fix_sql == 'ALTER ROLE "reader" WITH REPLICATION;'
        for fix in (checks["privileges"].fix_sql, checks["replication privilege"].fix_sql):
            pg.run(fix)
        after = run_checks(dsn, "public.users", "uid")
        assert all(c.level in ("pass", "info") for c in after.values()), after
        sync_as(dsn, pg)  # and the role can really sync with exactly those rights
    finally:
        pg.run("DROP OWNED BY reader")
        pg.run("DROP ROLE reader")


def sync_as(dsn: str, pg: Pg) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as home, DuckDBStore(home) as store:
        store.add_connection(Connection("pg", "postgres", {"dsn": dsn}))
        add_table_source(store, props=[("title", "Title")])
        assert engine.sync(store, "users").inserted == 1
        pg.run("UPDATE users SET title = 'as reader'")
        assert engine.sync(store, "users").updated == 1
        store.get_source("users")
        from profilesync.warehouses import open_warehouse

        warehouse = open_warehouse(store.get_connection("pg"), "users")
        warehouse.release(store.get_source("users").mapping)
        warehouse.close()


def test_slot_state_is_reported_and_a_lost_slot_warns(pg: Pg, pgstore: DuckDBStore) -> None:
    pg.create_users(rows=1)
    add_table_source(pgstore)
    engine.sync(pgstore, "users")
    check = run_checks(pg.dsn, "public.users", "uid")["replication slot"]
    assert check.level == "pass" and "holds" in check.message and "reserved" in check.message
    invalidate_slots(pg.server, pg.database)
    lost = run_checks(pg.dsn, "public.users", "uid")["replication slot"]
    assert lost.level == "warn" and "--resync" in lost.message


def test_views_and_diff_strategy(pg: Pg) -> None:
    pg.create_users(rows=1)
    pg.run("CREATE VIEW active_users AS SELECT * FROM users")
    view = run_checks(pg.dsn, "public.active_users", "uid")
    assert view["change data capture"].level == "fail"
    assert "--strategy diff" in view["change data capture"].message
    diff = run_checks(pg.dsn, "public.active_users", "uid", strategy="diff")
    assert levels(diff) == {"table": "pass", "privileges": "pass", "strategy": "info"}


def test_wal_level_other_than_logical_fails_with_the_setting_to_change() -> None:
    # the session's server runs with wal_level = logical; the check itself is plain logic
    server: dict[str, Any] = {"wal_level": "replica"}
    check = wal_level_check(server)
    assert check.level == "fail"
    assert check.fix_sql == "ALTER SYSTEM SET wal_level = logical; -- then restart PostgreSQL"


def test_source_test_reports_through_the_engine(pg: Pg, pgstore: DuckDBStore) -> None:
    pg.run("CREATE TABLE accounts (id serial PRIMARY KEY, email text, title text)")
    pg.run("INSERT INTO accounts (email, title) VALUES ('someone@example.com', 'x'), ('ab', 'y')")
    source = add_table_source(pgstore, "accounts", "public.accounts", "email", [("title", "Title")])
    report = engine.test_mapping(pgstore, source)
    assert not report["ok"]
    failed = [c for c in report["checks"] if c["level"] == "fail"]
    assert [c["name"] for c in failed] == ["replica identity"]
    assert report["preview"] == [{"user_id": "someone@example.com", "Title": "x"}]
    assert report["rejected"] == 1


def test_an_unreachable_server_is_a_retriable_error(tmp_path: Path) -> None:
    from profilesync.errors import WarehouseUnavailableError

    with DuckDBStore(tmp_path / "home") as store:
        store.add_connection(Connection("pg", "postgres", {"dsn": "host=127.0.0.1 port=1"}))
        add_table_source(store)
        with pytest.raises(WarehouseUnavailableError, match=r"could not connect.*--dsn") as caught:
            engine.sync(store, "users")
        assert caught.value.retriable
