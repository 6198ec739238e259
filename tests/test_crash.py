"""Crash safety (semantics 5): a sync process killed with SIGKILL loses and double-counts nothing.

``PROFILESYNC_FAULT=<point>`` makes the ``profilesync`` process kill itself with SIGKILL
at that point: ``after_read`` (changes read and compacted, nothing applied yet),
``apply`` (inside the apply transaction, before any write), ``mid_apply`` (old rows
deleted, new ones not yet written) and ``before_commit`` (everything written, not
committed). The next ordinary run must leave the store equal to the warehouse and the
usage counted once.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from profilesync.model import Connection
from profilesync.store import DuckDBStore
from tests.conftest import (
    Cli,
    Warehouse,
    expected,
    profiles,
    table_source,
    usage_total,
    users_table,
)

PROPS = [("title", "Title"), ("score", "Score"), ("active", "Active")]
POINTS = ["after_read", "apply", "mid_apply", "before_commit"]


def state(home: Path) -> dict[str, Any]:
    """What a user can observe in the store: profiles, checkpoint, usage, successful runs."""
    with DuckDBStore(home) as store:
        checkpoint = store.get_source("users").checkpoint
        return {
            "profiles": profiles(store),
            "checkpoint": checkpoint.position if checkpoint else None,
            "used": usage_total(store),
            "runs": [r["status"] for r in store.runs("users")],
        }


def killed_sync(cli: Cli, point: str) -> None:
    proc = cli("sync", "users", "--json", env={"PROFILESYNC_FAULT": point})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert proc.stdout == ""


def change(warehouse: Warehouse) -> None:
    """Updates, a NULL-out, deletes and inserts in several commits."""
    warehouse.update("prod.users", "uid < 10051", {"title": "'promoted'"})
    warehouse.update("prod.users", "uid = 10060", {"score": "NULL"})
    warehouse.delete("prod.users", "uid > 10180")
    warehouse.append("prod.users", users_table(30, start=20_001))


@pytest.mark.parametrize("point", POINTS)
def test_a_killed_sync_resumes_from_the_last_checkpoint(
    point: str, warehouse: Warehouse, tmp_path: Path, cli: Cli
) -> None:
    warehouse.create("prod.users", users_table(200))
    home = tmp_path / "home"
    with DuckDBStore(home) as store:
        store.add_connection(Connection("lake", "delta", {"path": str(warehouse.root)}))
        table_source(store, "users", "prod.users", "uid", PROPS)

    killed_sync(cli, point)  # the first sync (a snapshot) dies
    assert state(home) == {"profiles": {}, "checkpoint": None, "used": 0, "runs": []}
    first = cli.json("sync", "users")
    assert (first["mode"], first["operations"]) == ("initial", 200)
    before = state(home)
    assert before["profiles"] == expected(warehouse.rows("prod.users"), "uid", PROPS)
    assert (before["checkpoint"], before["used"], before["runs"]) == ("0", 200, ["success"])

    change(warehouse)
    killed_sync(cli, point)  # an incremental sync dies
    assert state(home) == before
    result = cli.json("sync", "users")
    assert (result["previous_checkpoint"], result["checkpoint"]) == ("0", "4")
    assert (result["inserted"], result["updated"], result["deleted"]) == (30, 51, 20)
    after = state(home)
    assert after["profiles"] == expected(warehouse.rows("prod.users"), "uid", PROPS)
    assert after["used"] == 200 + 101
    assert after["runs"] == ["success", "success"]
    assert cli.json("sync", "users")["operations"] == 0


def test_a_large_first_sync_killed_before_commit_leaves_nothing(
    warehouse: Warehouse, tmp_path: Path, cli: Cli
) -> None:
    # 60,000 rows: more than one row group is written in the transaction the kill drops
    ids = pa.array(range(100_000, 160_000), pa.int64())
    warehouse.create(
        "prod.users", pa.table({"uid": ids, "title": pa.compute.cast(ids, pa.string())})
    )
    home = tmp_path / "home"
    with DuckDBStore(home) as store:
        store.add_connection(Connection("lake", "delta", {"path": str(warehouse.root)}))
        table_source(store, "users", "prod.users", "uid", [("title", "Title")])
    killed_sync(cli, "before_commit")
    assert cli.json("usage")["used"] == 0
    assert cli("profile", "get", "100001").returncode == 1
    assert cli.json("sync", "users")["inserted"] == 60_000
    assert cli.json("profile", "get", "159999") == {
        "user_id": "159999",
        "properties": {"Title": "159999"},
    }
