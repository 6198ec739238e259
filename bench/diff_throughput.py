"""Snapshot diff on a DuckDB file and CDC on a DuckLake, against hand-written DuckDB MERGEs.

    python bench/diff_throughput.py [--users 1000000] [--changed 0.01] [--lake-users 1000000] [--lake-changes 100000]

Part 1 (``--strategy diff`` on ``--kind duckdb``): first sync of a ``--users`` table, then
``--changed`` of the users change (60% updates, 20% deletes, 20% inserts) and a resync
that reads the whole table again. The baseline is the shortest correct script: one
``MERGE ... WHEN NOT MATCHED BY SOURCE THEN DELETE`` of the table into a copy with a
primary key. Part 2 (``--kind ducklake``, CDC): first sync of a ``--lake-users`` lake
table, then ``--lake-changes`` changed users (70% updates, 10% deletes, 20% inserts) in
three snapshots and an incremental sync; the baseline reads ``ducklake_table_changes``,
keeps each user's last change and MERGEs it into a table with a primary key.

Each figure is the best of three runs, each from the same starting state (a fresh copy of
its home), timed inside a fresh process after its imports (``bench/_harness.py``), so peak
memory (max RSS) is per phase. Prints seconds, rows/s, peak MB and the speed-up; it is a
benchmark, not a test. Run it as a script from the repository root (``make bench`` runs it
with the other sync benchmarks).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import duckdb
from _harness import PROFILESYNC, best_of, header, line

COLUMNS = ("plan", "title", "score", "purchases")
DIFF = (*PROFILESYNC, "profilesync.sources.duckdb")
LAKE = (*PROFILESYNC, "profilesync.sources.ducklake")
LAKE_BASE = ("profilesync.sources.ducklake",)  # the baseline loads the extension its way
TABLE_SQL = """SELECT i AS uid, (['free', 'starter', 'growth', 'enterprise'])[1 + (hash(i) % 4)::INT] AS plan,
                      'title-' || (hash(i + 7) % 500) AS title, (hash(i + 13) % 10000) / 10000.0 AS score,
                      (hash(i + 17) % 100)::BIGINT AS purchases
               FROM range({start}, {stop}) t(i)"""


# -- warehouses -----------------------------------------------------------------------


def connect(path: Path | None = None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(path) if path else ":memory:")
    con.execute("SET enable_progress_bar = false")
    return con


def lake_connect(work: Path) -> duckdb.DuckDBPyConnection:
    from profilesync.sources.duckdb import offline_connect
    from profilesync.sources.ducklake import extension_file

    con = offline_connect()
    con.execute(f"LOAD '{extension_file('ducklake', 'duckdb-extension-ducklake')}'")
    con.execute(
        f"ATTACH 'ducklake:{work / 'lake.ducklake'}' AS lake (DATA_PATH '{work / 'lake-data'}/')"
    )
    return con


def build(con: duckdb.DuckDBPyConnection, table: str, users: int) -> None:
    con.execute(
        f"CREATE TABLE {table} AS {TABLE_SQL.format(start=1_000_000, stop=1_000_000 + users)}"
    )


def change(
    con: duckdb.DuckDBPyConnection, table: str, users: int, changed: int, split: tuple[float, float]
) -> int:
    """Updates and deletes spread through the table (one statement each), then inserts."""
    updates, deletes = int(changed * split[0]), int(changed * split[1])
    inserts = changed - updates - deletes
    step = users // (updates + deletes)
    picked = f"(uid - 1000000) % {step} = 0"
    con.execute(
        f"UPDATE {table} SET plan = 'changed', purchases = purchases + 1 WHERE {picked} AND (uid - 1000000) // {step} < {updates}"
    )
    con.execute(
        f"DELETE FROM {table} WHERE {picked} AND (uid - 1000000) // {step} >= {updates} AND (uid - 1000000) // {step} < {updates + deletes}"
    )
    con.execute(
        f"INSERT INTO {table} {TABLE_SQL.format(start=5_000_000, stop=5_000_000 + inserts)}"
    )
    return updates + deletes + inserts


# -- profilesync --------------------------------------------------------------------------


def profilesync_setup(home: Path, kind: str, config: dict[str, Any], strategy: str) -> None:
    from profilesync.mapping import from_columns
    from profilesync.model import Connection, Source
    from profilesync.store.duckdb import DuckDBStore

    with DuckDBStore(home) as store:
        store.add_connection(Connection("wh", kind, config))
        mapping = from_columns("main.users", "uid", [(c, c) for c in COLUMNS])
        store.add_source(Source("users", "wh", mapping, strategy=strategy))  # type: ignore[arg-type]


def profilesync_sync(home: Path) -> dict[str, Any]:
    from profilesync.store.duckdb import DuckDBStore
    from profilesync.sync import engine

    with DuckDBStore(home) as store:
        result = engine.sync(store, "users")
    return {"rows": result.read, "operations": result.operations, "unchanged": result.unchanged}


# -- baselines ----------------------------------------------------------------------------

_CREATE = "CREATE TABLE p (user_id VARCHAR PRIMARY KEY, plan VARCHAR, title VARCHAR, score DOUBLE, purchases BIGINT)"
_SELECT = "SELECT uid::VARCHAR AS user_id, plan, title, score, purchases"


def diff_baseline(warehouse: Path, home: Path) -> dict[str, Any]:
    """Read the whole table and MERGE it into a keyed copy, deleting users no longer there."""
    home.mkdir(parents=True, exist_ok=True)
    con = connect(home / "baseline.duckdb")
    con.execute(f"ATTACH '{warehouse}' AS wh (READ_ONLY)")
    if not con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'p'").fetchone()[0]:  # type: ignore[index]
        con.execute(_CREATE)
    con.execute("BEGIN")
    con.execute(f"""MERGE INTO p USING ({_SELECT} FROM wh.main.users) s ON p.user_id = s.user_id
        WHEN MATCHED AND (p.plan, p.title, p.score, p.purchases) IS DISTINCT FROM (s.plan, s.title, s.score, s.purchases)
            THEN UPDATE SET plan = s.plan, title = s.title, score = s.score, purchases = s.purchases
        WHEN NOT MATCHED THEN INSERT VALUES (s.user_id, s.plan, s.title, s.score, s.purchases)
        WHEN NOT MATCHED BY SOURCE THEN DELETE""")
    con.execute("COMMIT")
    rows = con.execute("SELECT count(*) FROM wh.main.users").fetchone()[0]  # type: ignore[index]
    con.close()
    return {"rows": rows}


def lake_baseline(work: Path, home: Path) -> dict[str, Any]:
    """table_changes after the last snapshot -> last change per user -> MERGE on a primary key."""
    home.mkdir(parents=True, exist_ok=True)
    lake = lake_connect(work)
    lake.execute("ATTACH '" + str(home / "baseline.duckdb") + "' AS b")
    lake.execute("CREATE TABLE IF NOT EXISTS b.state (snapshot BIGINT)")
    last = lake.execute("SELECT max(snapshot) FROM b.state").fetchone()[0]  # type: ignore[index]
    current = lake.execute("SELECT id FROM lake.current_snapshot()").fetchone()[0]  # type: ignore[index]
    lake.execute("BEGIN")
    if last is None:
        lake.execute(_CREATE.replace("TABLE p", "TABLE b.p"))
        lake.execute(f"INSERT INTO b.p {_SELECT} FROM lake.main.users AT (VERSION => {current})")
        rows = lake.execute("SELECT count(*) FROM b.p").fetchone()[0]  # type: ignore[index]
    else:
        lake.execute(f"""CREATE TEMP TABLE c AS {_SELECT}, change_type AS t
            FROM ducklake_table_changes('lake', 'main', 'users', {last + 1}, {current})
            WHERE change_type <> 'update_preimage'
            QUALIFY row_number() OVER (PARTITION BY uid ORDER BY snapshot_id DESC, change_type <> 'delete') = 1""")
        rows = lake.execute("SELECT count(*) FROM c").fetchone()[0]  # type: ignore[index]
        lake.execute("""MERGE INTO b.p USING c ON b.p.user_id = c.user_id
            WHEN MATCHED AND c.t = 'delete' THEN DELETE
            WHEN MATCHED THEN UPDATE SET plan = c.plan, title = c.title, score = c.score, purchases = c.purchases
            WHEN NOT MATCHED AND c.t <> 'delete' THEN INSERT VALUES (c.user_id, c.plan, c.title, c.score, c.purchases)""")
    lake.execute("INSERT INTO b.state VALUES (?)", [current])
    lake.execute("COMMIT")
    lake.close()
    return {"rows": rows}


# -- report -------------------------------------------------------------------------------


def diff_part(work: Path, users: int, share: float) -> None:
    path = work / "warehouse.duckdb"
    con = connect(path)
    build(con, "main.users", users)
    con.close()
    profilesync_setup(work / "home", "duckdb", {"path": str(path)}, "diff")
    first = best_of(profilesync_sync, home=work / "home", preload=DIFF)
    first_base = best_of(diff_baseline, path, home=work / "base")
    con = connect(path)
    changed = change(con, "main.users", users, int(users * share), (0.6, 0.2))
    con.close()
    again = best_of(profilesync_sync, home=work / "home", preload=DIFF)
    again_base = best_of(diff_baseline, path, home=work / "base")
    print(
        f"DuckDB table, --strategy diff: {users:,} users; resync after {changed:,} changed users ({share:.0%})"
    )
    header()
    line("first sync", first, first_base, users)
    line("resync (whole table)", again, again_base, again["rows"])
    print(
        f"(resync rows/s counts rows read; profilesync applied and metered {again['operations']:,} operations, "
        f"{again['unchanged']:,} rows unchanged)"
    )


def lake_part(work: Path, users: int, changes: int) -> None:
    con = lake_connect(work)
    build(con, "lake.main.users", users)
    con.close()
    config = {"catalog": str(work / "lake.ducklake"), "data_path": str(work / "lake-data")}
    profilesync_setup(work / "lake-home", "ducklake", config, "cdc")
    first = best_of(profilesync_sync, home=work / "lake-home", preload=LAKE)
    first_base = best_of(lake_baseline, work, home=work / "lake-base", preload=LAKE_BASE)
    con = lake_connect(work)
    changed = change(con, "lake.main.users", users, changes, (0.7, 0.1))
    con.close()
    incr = best_of(profilesync_sync, home=work / "lake-home", preload=LAKE)
    incr_base = best_of(lake_baseline, work, home=work / "lake-base", preload=LAKE_BASE)
    print(
        f"\nDuckLake table, CDC: {users:,} users; incremental: {changed:,} changed users in three snapshots"
    )
    header()
    line("first sync", first, first_base, users)
    line("incremental sync", incr, incr_base, changed)
    print(
        f"(incremental rows/s counts changed users; the change feed held {incr['rows']:,} rows incl. "
        f"pre-images; profilesync metered {incr['operations']:,} operations)"
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument(
        "--changed", type=float, default=0.01, help="share of users changed before the resync"
    )
    ap.add_argument("--lake-users", type=int, default=1_000_000)
    ap.add_argument("--lake-changes", type=int, default=100_000)
    ap.add_argument("--skip-lake", action="store_true")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="profilesync-bench-"))
    try:
        diff_part(work, args.users, args.changed)
        if not args.skip_lake:
            lake_part(work, args.lake_users, args.lake_changes)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
