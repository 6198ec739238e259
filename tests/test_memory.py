"""Every sync streams in bounded memory: a window far larger than ``sync_memory_limit``
completes and leaves the store equal to the warehouse; the limit is a setting; a sync
killed while spilling leaves the store unchanged and no spill file behind the next sync.

Behaviour, not time: nothing here asserts a duration or a memory figure beyond "reported".
"""

from __future__ import annotations

import signal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from profilesync.model import Connection
from profilesync.store import STORE_FILE, DuckDBStore
from tests.conftest import Cli, Warehouse, table_source

PROPS = [("title", "Title"), ("score", "Score")]


def narrow(n: int, start: int = 100_000_000) -> pa.Table:
    """``n`` users with integer ids, a title and a score, built without Python per row."""
    ids = pa.array(range(start, start + n), pa.int64())
    return pa.table(
        {
            "uid": ids,
            "title": pc.binary_join_element_wise("title-", pc.cast(ids, pa.string()), ""),
            "score": pc.divide(pc.cast(ids, pa.float64()), 100.0),
        }
    )


def setup(warehouse: Warehouse, home: Path, table: pa.Table) -> None:
    warehouse.create("prod.users", table)
    with DuckDBStore(home) as store:
        store.add_connection(Connection("lake", "delta", {"path": str(warehouse.root)}))
        table_source(store, "users", "prod.users", "uid", PROPS)


def differences(home: Path, warehouse: Warehouse) -> tuple[int, int]:
    """Rows the store lacks and rows it has too many, compared in SQL (1M rows) on a
    connection of its own: the store's is held to the tiny limit under test."""
    table = warehouse.dt("prod.users").to_pyarrow_table()
    with DuckDBStore(home) as store:
        relation = store.profile_relation(store.get_source("users"))
    con = duckdb.connect(str(home / STORE_FILE), read_only=True)
    try:
        con.register("wanted", table)
        want = "SELECT CAST(uid AS VARCHAR) AS u, title AS t, score AS s FROM wanted"
        have = f'SELECT user_id AS u, "Title" AS t, "Score" AS s FROM {relation}'
        counts = con.execute(
            f"SELECT (SELECT count(*) FROM ({want} EXCEPT ALL {have})), "
            f"(SELECT count(*) FROM ({have} EXCEPT ALL {want}))"
        ).fetchone()
        assert counts is not None
        return int(counts[0]), int(counts[1])
    finally:
        con.close()


def spill_files(home: Path) -> list[str]:
    temp = home / "tmp"
    return (
        sorted(p.name for p in temp.iterdir() if p.name.startswith("sync-"))
        if temp.is_dir()
        else []
    )


@pytest.mark.slow
def test_a_million_rows_sync_under_a_96mb_limit(
    warehouse: Warehouse, tmp_path: Path, cli: Cli
) -> None:
    setup(warehouse, cli.home, narrow(1_000_000))
    cli.ok("config", "set", "sync_memory_limit", "96MB")

    first = cli.json("sync", "users")
    assert (first["mode"], first["inserted"], first["read"]) == ("initial", 1_000_000, 1_000_000)
    assert first["peak_memory_bytes"] > 0
    assert differences(cli.home, warehouse) == (0, 0)

    warehouse.update("prod.users", "uid % 10 = 0", {"title": "'promoted'"})
    warehouse.delete("prod.users", "uid % 7 = 0")
    warehouse.append("prod.users", narrow(50_000, start=200_000_000))
    window = cli.json("sync", "users")
    deleted = (101_000_000 - 1) // 7 - (100_000_000 - 1) // 7  # multiples of 7 among the ids
    assert (window["mode"], window["inserted"], window["deleted"]) == (
        "incremental",
        50_000,
        deleted,
    )
    assert differences(cli.home, warehouse) == (0, 0)

    resync = cli.json("sync", "users", "--resync")
    assert (resync["mode"], resync["operations"]) == ("resync", 0)
    assert differences(cli.home, warehouse) == (0, 0)
    assert spill_files(cli.home) == []
    with DuckDBStore(cli.home) as store:
        runs = store.runs("users")
    assert [r["status"] for r in runs] == ["success"] * 3
    assert all(r["peak_memory_bytes"] > 0 for r in runs)


def test_the_memory_limit_is_a_setting(cli: Cli) -> None:
    assert cli.json("config", "get")["sync_memory_limit"] == 1_000_000_000  # the default
    assert "512MB" in cli.ok("config", "set", "sync_memory_limit", "512MB").stdout
    assert cli.json("config", "get")["sync_memory_limit"] == 512_000_000
    cli.ok("config", "set", "sync_memory_limit", "2GiB")
    assert cli.json("config", "get")["sync_memory_limit"] == 2 * 1024**3
    for bad in ("lots", "-5", "0MB", "1KB", "3PB", "1.5GB", "99999999999999999999GB"):
        proc = cli("config", "set", "sync_memory_limit", bad)
        assert proc.returncode == 1, (bad, proc.stdout, proc.stderr)
        assert "sync_memory_limit" in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert cli.json("config", "get")["sync_memory_limit"] == 2 * 1024**3  # unchanged
    cli.ok("config", "set", "sync_memory_limit", "default")
    assert cli.json("config", "get")["sync_memory_limit"] == 1_000_000_000


def test_a_sync_killed_while_spilling_changes_nothing_and_leaves_no_file(
    warehouse: Warehouse, tmp_path: Path, cli: Cli
) -> None:
    setup(warehouse, cli.home, narrow(3_000))
    for part in range(1, 4):  # one file, one batch each: the kill comes after the first
        warehouse.append("prod.users", narrow(3_000, start=100_000_000 + part * 3_000))
    cli.ok("config", "set", "sync_memory_limit", "96MB")

    proc = cli("sync", "users", "--json", env={"PROFILESYNC_FAULT": "spill"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert spill_files(cli.home), "the kill came while the spill database was open"
    with DuckDBStore(cli.home) as store:
        assert store.get_source("users").checkpoint is None
        assert store.runs("users") == []
        assert store.usage()["used"] == 0

    first = cli.json("sync", "users")
    assert (first["mode"], first["inserted"]) == ("initial", 12_000)
    assert differences(cli.home, warehouse) == (0, 0)
    assert spill_files(cli.home) == []

    warehouse.update("prod.users", "uid % 10 = 0", {"title": "'promoted'"})
    warehouse.delete("prod.users", "uid % 7 = 0")
    proc = cli("sync", "users", "--json", env={"PROFILESYNC_FAULT": "spill"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    again = cli.json("sync", "users")
    assert again["mode"] == "incremental" and again["operations"] > 0
    assert differences(cli.home, warehouse) == (0, 0)
    assert spill_files(cli.home) == []


def test_a_limit_too_small_for_the_sync_says_which_setting_and_applies_nothing(
    warehouse: Warehouse, cli: Cli
) -> None:
    setup(warehouse, cli.home, narrow(300_000))
    cli.ok("config", "set", "sync_memory_limit", "16MB")

    proc = cli("sync", "users")
    assert proc.returncode == 1, proc.stderr
    message = proc.stderr.strip()
    assert "sync_memory_limit" in message and "config set sync_memory_limit" in message
    assert "Traceback" not in message and "unexpectedly" not in message
    with DuckDBStore(cli.home) as store:
        assert store.get_source("users").checkpoint is None
        assert [r["error_code"] for r in store.runs("users")] == ["out_of_memory"]
        assert store.usage()["used"] == 0

    cli.ok("config", "set", "sync_memory_limit", "256MB")
    assert cli.json("sync", "users")["inserted"] == 300_000
    assert differences(cli.home, warehouse) == (0, 0)
