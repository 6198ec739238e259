"""Crash safety with a real PostgreSQL: a first sync or a ``--resync`` killed at each fault point.

The ``profilesync`` process kills itself with SIGKILL at ``PROFILESYNC_FAULT=<point>``
(see ``tests/test_crash.py``). The next ordinary run must leave the store equal to the
table, the replication slot usable, and the usage counted once.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from profilesync.model import Connection
from profilesync.store.duckdb import DuckDBStore
from tests.conftest import Cli
from tests.postgres.conftest import Pg, add_table_source, profiles

pytestmark = pytest.mark.postgres

POINTS = ["after_read", "apply", "mid_apply", "before_commit"]
PROPS = [("title", "Title"), ("score", "Score")]


def table(pg: Pg) -> dict[str, dict[str, Any]]:
    """What the store must hold: the table's non-null values by user id."""
    rows = pg.run("SELECT uid, title, score FROM users")
    return {
        str(uid): {k: v for k, v in (("Title", title), ("Score", score)) if v is not None}
        for uid, title, score in rows
    }


def state(home: Path) -> dict[str, Any]:
    with DuckDBStore(home) as store:
        return {
            "profiles": profiles(store),
            "used": int(store.usage()["used"]),
            "runs": [r["status"] for r in store.runs("users")],
        }


def killed(cli: Cli, *args: str, point: str) -> None:
    proc = cli("sync", "users", *args, "--json", env={"PROFILESYNC_FAULT": point})
    assert proc.returncode == -signal.SIGKILL, proc.stderr


@pytest.mark.parametrize("point", POINTS)
def test_a_killed_first_sync_and_resync_leave_the_store_equal_to_the_table(
    pg: Pg, tmp_path: Path, cli: Cli, point: str
) -> None:
    pg.create_users(rows=300)
    home = tmp_path / "home"
    with DuckDBStore(home) as store:
        store.add_connection(Connection("pg", "postgres", {"dsn": pg.dsn}))
        add_table_source(store, props=PROPS)

    killed(cli, point=point)
    assert state(home) == {"profiles": {}, "used": 0, "runs": []}
    first = cli.json("sync", "users")
    assert (first["mode"], first["operations"]) == ("initial", 300)
    before = state(home)
    assert before["profiles"] == table(pg) and before["used"] == 300

    pg.run("UPDATE users SET title = 'changed' WHERE uid % 3 = 0")
    pg.run("DELETE FROM users WHERE uid % 7 = 0")
    killed(cli, "--resync", point=point)
    assert state(home) == before
    resync = cli.json("sync", "users", "--resync")
    after = state(home)
    assert after["profiles"] == table(pg)
    assert after["used"] == 300 + resync["operations"] > 300
    assert after["runs"] == ["success", "success"]
    pg.run("INSERT INTO users VALUES (999999, 'late', 1.0, true, NULL)")
    assert cli.json("sync", "users")["operations"] == 1  # the slot streams on from the resync
    assert state(home)["profiles"] == table(pg)
