"""A wal2json window larger than the sync's memory budget streams: it is staged in a
scratch engine that spills to disk, read back in batches, and the engine's spill
directory is gone once the window is read (or dropped). Errors about the window still
stop the sync as the same errors, before anything is read.

Behaviour, not time: nothing here asserts a duration or a memory figure.
"""

from __future__ import annotations

import gc
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from profilesync.errors import TableReplacedError, WarehouseUnavailableError
from profilesync.model import Source
from profilesync.scratch import SPILL_PREFIX, budget
from profilesync.store.duckdb import DuckDBStore
from profilesync.sync import engine
from profilesync.warehouses import open_warehouse
from profilesync.warehouses.protocol import DELETE, OP, UPSERT, Changes
from tests.postgres.conftest import Pg, add_table_source

pytestmark = pytest.mark.postgres

PROPS = [("title", "Title"), ("score", "Score")]
BUDGET = 64_000_000
USERS = 100_000
#: DELETE 20k rows, UPDATE the other 80k, INSERT 100k: 200k changes in three transactions,
#: one per user (how the transform nets several changes of a user is not tested here)
DELETED, UPDATED, INSERTED = 20_000, USERS - 20_000, 100_000


def big_window(pg: Pg) -> None:
    pg.run(f"DELETE FROM users WHERE uid <= {100_000 + DELETED}")
    pg.run("UPDATE users SET title = 'changed-' || uid, score = score + 1")
    pg.run(
        "INSERT INTO users SELECT 900000 + i, 'new-' || i, i / 8.0, true, NULL "
        f"FROM generate_series(1, {INSERTED}) i"
    )


def synced(pg: Pg, store: DuckDBStore) -> Source:
    """A source over ``USERS`` rows after its first sync."""
    pg.create_users(rows=USERS)
    add_table_source(store, props=PROPS)
    engine.sync(store, "users")
    return store.get_source("users")


def spill_dirs(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob(f"{SPILL_PREFIX}users+*"))


def changes(store: DuckDBStore, source: Source) -> Changes:
    warehouse = open_warehouse(store.get_connection("pg"), source.name)
    assert source.checkpoint is not None
    return warehouse.changes(source.mapping, source.checkpoint)


def differences(pg: Pg, store: DuckDBStore) -> tuple[int, int]:
    """Rows the store lacks and rows it has too many, compared in SQL."""
    rows = pg.run("SELECT uid::text, title, score FROM users")
    wanted = pa.table(list(zip(*rows, strict=True)), names=["u", "t", "s"])
    relation = store.profile_relation(store.get_source("users"))
    store.con.register("wanted", wanted)
    try:
        have = f'SELECT user_id AS u, "Title" AS t, "Score" AS s FROM {relation}'
        counts = store.con.execute(
            f"SELECT (SELECT count(*) FROM (FROM wanted EXCEPT ALL {have})), "
            f"(SELECT count(*) FROM ({have} EXCEPT ALL FROM wanted))"
        ).fetchone()
        assert counts is not None
        return int(counts[0]), int(counts[1])
    finally:
        store.con.unregister("wanted")


def test_a_200k_change_window_syncs_under_a_64mb_budget(
    pg: Pg, pgstore: DuckDBStore, tmp_path: Path
) -> None:
    synced(pg, pgstore)
    big_window(pg)
    # the setting for an engine that sets the budget itself, the budget for one that does not
    pgstore.set_setting("sync_memory_limit", f"{BUDGET}B")
    with budget(BUDGET, tmp_path / "spill", "users"):
        result = engine.sync(pgstore, "users")
    assert (result.mode, result.inserted, result.updated, result.deleted) == (
        "incremental",
        INSERTED,
        UPDATED,
        DELETED,
    )
    assert differences(pg, pgstore) == (0, 0)
    assert spill_dirs(tmp_path / "spill") == spill_dirs(pgstore.home / "tmp") == []


def test_the_window_streams_in_batches_from_a_spill_directory_removed_after(
    pg: Pg, pgstore: DuckDBStore, tmp_path: Path
) -> None:
    source = synced(pg, pgstore)
    big_window(pg)
    spill = tmp_path / "spill"
    with budget(BUDGET, spill, "users"):
        window = changes(pgstore, source)
        assert len(spill_dirs(spill)) == 1  # the engine lives on while the reader is unread
        ops: dict[str, int] = {}
        batches = 0
        for batch in window.reader:
            batches += 1
            for each in pc.value_counts(batch.column(OP)).to_pylist():
                ops[each["values"]] = ops.get(each["values"], 0) + each["counts"]
        assert batches > 1
        assert ops == {UPSERT: UPDATED + INSERTED, DELETE: DELETED}
        assert spill_dirs(spill) == []  # drained: closed

        unread = changes(pgstore, source)  # peeked again: the slot was not consumed
        assert unread.checkpoint == window.checkpoint
        next(iter(unread.reader))
        assert len(spill_dirs(spill)) == 1
        del unread
        gc.collect()
        assert spill_dirs(spill) == []  # dropped half read: closed too


def test_a_truncate_in_a_large_window_still_asks_for_a_resync(
    pg: Pg, pgstore: DuckDBStore, tmp_path: Path
) -> None:
    source = synced(pg, pgstore)
    big_window(pg)
    pg.run("TRUNCATE users")
    pg.run("INSERT INTO users (uid, title) VALUES (100009, 'reloaded')")
    with budget(BUDGET, tmp_path / "spill", "users"):
        with pytest.raises(TableReplacedError, match=r"truncated.*--resync"):
            changes(pgstore, source)  # raised before a reader exists
        assert spill_dirs(tmp_path / "spill") == []
        with pytest.raises(TableReplacedError, match=r"truncated.*--resync"):
            engine.sync(pgstore, "users")
    assert pgstore.runs("users")[0]["status"] == "failed"


def test_a_connection_lost_while_peeking_is_the_same_clear_error(
    pg: Pg, pgstore: DuckDBStore, tmp_path: Path
) -> None:
    """The peeked rows are pulled by DuckDB; the driver's error still reaches the user
    as the warehouse being unavailable, not as a DuckDB error."""
    source = synced(pg, pgstore)
    big_window(pg)
    killed: list[int] = []

    def kill_the_peek() -> None:
        session = pg.session()
        deadline = time.monotonic() + 20
        while not killed and time.monotonic() < deadline:
            killed.extend(
                r[0]
                for r in session.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> "
                    "pg_backend_pid() AND query LIKE '%pg_logical_slot_peek_changes%'"
                ).fetchall()
            )
            time.sleep(0.01)
        session.close()

    killer = threading.Thread(target=kill_the_peek)
    killer.start()
    try:
        with (
            budget(BUDGET, tmp_path / "spill", "users"),
            pytest.raises(WarehouseUnavailableError, match="PostgreSQL did not answer"),
        ):
            changes(pgstore, source)
    finally:
        killer.join()
    assert killed
    assert spill_dirs(tmp_path / "spill") == []
