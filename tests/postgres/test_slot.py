"""The replication slot's life: created by the first sync, peeked (never consumed before the
store commits), advanced one sync later, lost, re-created by a resync, dropped on delete."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from profilesync.cli import app
from profilesync.errors import RetentionExceededError
from profilesync.store.duckdb import DuckDBStore
from profilesync.sync import engine
from profilesync.warehouses.postgres.slot import lsn_int
from tests.postgres.conftest import Pg, add_table_source, profiles
from tests.postgres_server import invalidate_slots

pytestmark = pytest.mark.postgres


def _sync_in_subprocess(home: Path, name: str, fault: str) -> int:
    """A sync in another process that the store's fault injection kills with SIGKILL."""
    code = (
        "import sys; from profilesync.store.duckdb import DuckDBStore; "
        "from profilesync.sync import engine; "
        f"engine.sync(DuckDBStore(sys.argv[1]), {name!r})"
    )
    env = {**os.environ, "PROFILESYNC_FAULT": fault}
    return subprocess.run([sys.executable, "-c", code, str(home)], env=env, check=False).returncode


def test_the_slot_is_advanced_only_to_what_the_store_committed(
    pg: Pg, pgstore: DuckDBStore
) -> None:
    pg.create_users(rows=2)
    add_table_source(pgstore)
    engine.sync(pgstore, "users")
    created = pg.slot("users")
    assert created is not None
    pg.run("UPDATE users SET title = 'x' WHERE uid = 100001")
    second = engine.sync(pgstore, "users")
    checkpoint = pgstore.get_source("users").checkpoint
    assert checkpoint is not None and second.checkpoint == checkpoint.position
    # committed, not yet released: the state a crash right after the commit leaves behind
    held = pg.slot("users")
    assert held is not None and held["confirmed"] == created["confirmed"]
    assert lsn_int(held["confirmed"]) < lsn_int(checkpoint.position)
    third = engine.sync(pgstore, "users")  # re-peeks that change and skips it
    assert (third.read, third.operations) == (0, 0)
    advanced = pg.slot("users")
    assert advanced is not None and advanced["confirmed"] == checkpoint.position


def test_a_crash_before_the_store_commits_replays_the_changes_once(
    pg: Pg, pgstore: DuckDBStore, tmp_path: Path
) -> None:
    pg.create_users(rows=3)
    add_table_source(pgstore)
    engine.sync(pgstore, "users")
    pg.run("UPDATE users SET title = 'one' WHERE uid = 100001")
    engine.sync(pgstore, "users")
    pg.run("UPDATE users SET title = 'two' WHERE uid = 100002")
    pg.run("DELETE FROM users WHERE uid = 100003")
    checkpoint = pgstore.get_source("users").checkpoint
    pgstore.close()
    # killed after the slot advanced to the committed checkpoint, before anything applied
    assert _sync_in_subprocess(tmp_path / "home", "users", "after_read") == -9
    # killed inside the store's transaction, just before COMMIT
    assert _sync_in_subprocess(tmp_path / "home", "users", "before_commit") == -9
    with DuckDBStore(tmp_path / "home") as store:
        assert store.get_source("users").checkpoint == checkpoint
        result = engine.sync(store, "users")
        assert (result.read, result.updated, result.deleted) == (2, 1, 1)
        assert profiles(store) == {
            "100001": {
                "Title": "one",
                "Score": 0.25,
                "VIP": False,
                "Seen At": "2024-03-01T13:00:00Z",
            },
            "100002": {
                "Title": "two",
                "Score": 0.5,
                "VIP": True,
                "Seen At": "2024-03-01T14:00:00Z",
            },
        }
        assert int(store.usage()["used"]) == 3 + 1 + 2


def test_an_invalidated_slot_fails_clearly_until_a_resync_recreates_it(
    pg: Pg, pgstore: DuckDBStore
) -> None:
    pg.create_users(rows=3)
    add_table_source(pgstore)
    engine.sync(pgstore, "users")
    before = profiles(pgstore)
    pg.run("UPDATE users SET title = 'lost' WHERE uid = 100001")
    invalidate_slots(pg.server, pg.database)
    with pytest.raises(
        RetentionExceededError, match=r"wal_status = 'lost'.*max_slot_wal_keep_size.*--resync"
    ):
        engine.sync(pgstore, "users")
    assert profiles(pgstore) == before
    assert pgstore.runs("users", limit=1)[0]["error_code"] == "retention_exceeded"
    result = engine.sync(pgstore, "users", resync=True)
    assert (result.mode, result.updated, result.unchanged) == ("resync", 1, 2)
    slot = pg.slot("users")
    assert slot is not None and slot["wal_status"] != "lost"
    pg.run("UPDATE users SET title = 'back' WHERE uid = 100002")
    assert engine.sync(pgstore, "users").updated == 1
    assert profiles(pgstore)["100002"]["Title"] == "back"


def test_a_dropped_slot_fails_clearly_until_a_resync(pg: Pg, pgstore: DuckDBStore) -> None:
    pg.create_users(rows=2)
    add_table_source(pgstore)
    engine.sync(pgstore, "users")
    pg.run("SELECT pg_drop_replication_slot('profilesync_users')")
    pg.run("DELETE FROM users WHERE uid = 100002")
    with pytest.raises(RetentionExceededError, match=r"does not exist.*--resync"):
        engine.sync(pgstore, "users")
    assert engine.sync(pgstore, "users", resync=True).deleted == 1
    assert pg.slot("users") is not None


def test_source_delete_drops_the_slot(pg: Pg, tmp_path: Path) -> None:
    pg.create_users(rows=2)
    runner = CliRunner()

    def cli(*args: str) -> None:
        result = runner.invoke(app, ["--home", str(tmp_path / "home"), *args])
        assert result.exit_code == 0, result.output

    cli("connection", "add", "pg", "--kind", "postgres", "--dsn", pg.dsn)
    cli("source", "add", "users", "--connection", "pg", "--table", "public.users",
        "--user-id", "uid", "--property", "title=Title")  # fmt: skip
    cli("sync", "users")
    assert pg.slots() == ["profilesync_users"]
    cli("source", "delete", "users")
    assert pg.slots() == []


def test_a_first_sync_replaces_a_leftover_lost_slot(pg: Pg, pgstore: DuckDBStore) -> None:
    pg.create_users(rows=2)
    add_table_source(pgstore)
    engine.sync(pgstore, "users")
    invalidate_slots(pg.server, pg.database)
    pgstore.delete_source("users")  # forgotten without `source delete`: the slot stays behind
    add_table_source(pgstore)
    first = engine.sync(pgstore, "users")
    assert (first.mode, first.inserted) == ("initial", 2)
    slot = pg.slot("users")
    assert slot is not None and slot["wal_status"] != "lost"


def test_source_delete_refuses_an_unreachable_server_unless_forced(pg: Pg, tmp_path: Path) -> None:
    """An abandoned slot keeps WAL: deleting a source whose server is gone needs --force."""
    from profilesync.mapping import from_columns
    from profilesync.model import Connection, Source

    home = tmp_path / "home"
    with DuckDBStore(home) as store:  # a server that no longer answers (nothing listens there)
        store.add_connection(
            Connection(
                "gone", "postgres", {"dsn": "host=127.0.0.1 port=9 dbname=x connect_timeout=2"}
            )
        )
        store.add_source(
            Source("users", "gone", from_columns("public.users", "uid", [("title", "Title")]))
        )
    runner = CliRunner()
    refused = runner.invoke(app, ["--home", str(home), "source", "delete", "users"])
    assert refused.exit_code == 1
    assert "not deleted" in str(refused.exception) and "--force" in str(refused.exception)
    with DuckDBStore(home) as store:
        assert [s.name for s in store.list_sources()] == ["users"]
    forced = runner.invoke(app, ["--home", str(home), "source", "delete", "users", "--force"])
    assert forced.exit_code == 0, forced.output
    with DuckDBStore(home) as store:
        assert store.list_sources() == []
