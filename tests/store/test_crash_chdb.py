"""Crash safety on the chdb store, through the real entry point: a ``profilesync --store
chdb`` process killed with SIGKILL at a fault point loses nothing, shows nothing of the
killed sync and meters nothing twice; the next ordinary run finishes the job.

The points are those of ``tests/test_crash.py`` where the store is at work (``apply``,
``mid_apply``, ``before_commit``) and ``after_commit``, which only a store without
multi-statement transactions has: the catalog committed the sync, its rows are still in
the pending table. An events import killed inside its batch stores nothing.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from profilesync.store import open_store
from tests.conftest import Cli, Warehouse, expected, profiles, usage_total, users_table
from tests.events.conftest import ms
from tests.test_crash import change

pytest.importorskip("chdb", reason="needs the clickhouse extra: pip install .[clickhouse]")

PROPS = [("title", "Title"), ("score", "Score"), ("active", "Active")]


def state(home: Path) -> dict[str, Any]:
    """What a user can observe: profiles, checkpoint, usage, successful runs (the store
    opened as the next command would, on the backend the home was made with)."""
    with open_store(home) as store:
        assert store.capabilities.dialect == "clickhouse"
        checkpoint = store.get_source("users").checkpoint
        return {
            "profiles": profiles(store),  # type: ignore[arg-type]
            "checkpoint": checkpoint.position if checkpoint else None,
            "used": usage_total(store),  # type: ignore[arg-type]
            "runs": [r["status"] for r in store.runs("users")],
        }


def killed(cli: Cli, *args: str, point: str) -> None:
    proc = cli(*args, env={"PROFILESYNC_FAULT": point})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert proc.stdout == ""


def add_source(cli: Cli, warehouse: Warehouse) -> None:
    add = ("connection", "add", "lake", "--kind", "delta", "--path", str(warehouse.root))
    cli.ok("--store", "chdb", *add)
    properties = [arg for name, label in PROPS for arg in ("--property", f"{name}={label}")]
    cli.ok("source", "add", "users", "--connection", "lake", "--table", "prod.users",
           "--user-id", "uid", *properties)  # fmt: skip


@pytest.mark.parametrize("point", ["apply", "mid_apply", "before_commit"])
def test_a_killed_sync_shows_nothing_and_the_next_one_applies_it_once(
    point: str, warehouse: Warehouse, cli: Cli
) -> None:
    warehouse.create("prod.users", users_table(200))
    add_source(cli, warehouse)
    killed(cli, "sync", "users", "--json", point=point)  # the first sync (a snapshot) dies
    assert state(cli.home) == {"profiles": {}, "checkpoint": None, "used": 0, "runs": []}
    assert cli.json("sync", "users")["operations"] == 200
    before = state(cli.home)
    assert before["profiles"] == expected(warehouse.rows("prod.users"), "uid", PROPS)

    change(warehouse)
    killed(cli, "sync", "users", "--json", point=point)  # an incremental sync dies
    assert state(cli.home) == before
    result = cli.json("sync", "users")
    assert (result["inserted"], result["updated"], result["deleted"]) == (30, 51, 20)
    after = state(cli.home)
    assert after["profiles"] == expected(warehouse.rows("prod.users"), "uid", PROPS)
    assert (after["used"], after["runs"]) == (200 + 101, ["success", "success"])


def test_a_sync_killed_after_its_commit_is_attached_by_the_next_command(
    warehouse: Warehouse, cli: Cli
) -> None:
    warehouse.create("prod.users", users_table(200))
    add_source(cli, warehouse)
    cli.ok("sync", "users")
    change(warehouse)
    killed(cli, "sync", "users", "--json", point="after_commit")
    after = state(cli.home)  # opening the store attaches the committed rows
    assert after["profiles"] == expected(warehouse.rows("prod.users"), "uid", PROPS)
    assert (after["checkpoint"], after["used"]) == ("4", 200 + 101)
    assert cli.json("sync", "users")["operations"] == 0


@pytest.mark.parametrize("point", ["import_chunk", "import_before_commit"])
def test_a_killed_import_stores_nothing_and_the_rerun_everything_once(
    tmp_path: Path, cli: Cli, point: str
) -> None:
    cli.ok("--store", "chdb", "events", "projects", "add", "web")
    path = tmp_path / "events.jsonl"
    rows = [
        {"event_type": "View", "user_id": f"user-{i:05}", "time": ms(1), "insert_id": f"v-{i}"}
        for i in range(3_000)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    killed(cli, "events", "import", str(path), "--json", point=point)
    totals = ("query", "segmentation", "-e", "View", "--from", "2024-05-01", "--to", "2024-05-01")
    assert cli.json(*totals)["series"][0]["total"] == 0
    first = cli.json("events", "import", str(path))
    assert (first["imported"], first["duplicates"]) == (3_000, 0)
    again = cli.json("events", "import", str(path))
    assert (again["imported"], again["duplicates"]) == (0, 3_000)
    assert cli.json(*totals)["series"][0]["total"] == 3_000
