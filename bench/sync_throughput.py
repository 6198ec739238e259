"""Sync throughput on a Delta table, against a minimal hand-written load_cdf -> DuckDB MERGE.

    python bench/sync_throughput.py [--users 1000000] [--updates 100000] [--deletes 20000] [--inserts 30000]

Phase 1: first sync of a ``--users`` table. Phase 2: ``--updates`` updates, ``--deletes``
deletes and ``--inserts`` inserts in three commits, then an incremental sync. Each
measurement runs in its own process so peak memory (max RSS) is per phase. The baseline
reads the same change data feed and MERGEs it into a DuckDB table with a primary key,
the shortest correct script a data engineer would write. Then a scale check: the same
changes into stores of two sizes (``--scale-small``/``--scale-large``), whose time ratio
shows whether a sync costs what the changes cost or what the table costs.

Each figure is the best of three runs, each from the same starting state, timed inside a
fresh process after its imports (``bench/_harness.py``). Prints a table of seconds, rows/s,
peak MB and ratios; it is a benchmark, not a test. Run it as a script from the repository
root (``make bench`` runs it with the other sync benchmarks).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from _harness import PROFILESYNC, best_of, header, line, measure
from deltalake import DeltaTable, write_deltalake

CDF = {"delta.enableChangeDataFeed": "true"}
OURS = (*PROFILESYNC, "profilesync.sources.delta")
THEIRS = ("deltalake",)
PLANS = ["free", "starter", "growth", "enterprise"]


def users_table(ids: np.ndarray, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    n = len(ids)
    return pa.table(
        {
            "uid": pa.array(ids, pa.int64()),
            "plan": pa.array(np.array(PLANS)[rng.integers(0, 4, n)]),
            "title": pa.array(np.char.add("title-", rng.integers(0, 500, n).astype(str))),
            "score": pa.array(rng.random(n)),
            "purchases": pa.array(rng.integers(0, 100, n), pa.int64()),
        }
    )


def build(path: Path, users: int) -> None:
    write_deltalake(
        str(path), users_table(np.arange(1_000_000, 1_000_000 + users), 1), configuration=CDF
    )


def change(path: Path, users: int, updates: int, deletes: int, inserts: int) -> int:
    """Updates spread through the table (one MERGE), deletes, then an append. Returns changed keys."""
    rng = np.random.default_rng(2)
    ids = np.arange(1_000_000, 1_000_000 + users)
    picked = rng.choice(ids, updates + deletes, replace=False)
    dt = DeltaTable(str(path))
    upd = users_table(picked[:updates], 3)
    dt.merge(
        upd, "t.uid = s.uid", source_alias="s", target_alias="t"
    ).when_matched_update_all().execute()
    gone = pa.table({"uid": pa.array(picked[updates:], pa.int64())})
    DeltaTable(str(path)).merge(
        gone, "t.uid = s.uid", source_alias="s", target_alias="t"
    ).when_matched_delete().execute()
    write_deltalake(
        str(path), users_table(np.arange(5_000_000, 5_000_000 + inserts), 4), mode="append"
    )
    return updates + deletes + inserts


# -- the two contenders --------------------------------------------------------------


def profilesync_setup(table: Path, home: Path) -> None:
    from profilesync.mapping import from_columns
    from profilesync.model import Connection, Source
    from profilesync.store.duckdb import DuckDBStore

    with DuckDBStore(home) as store:
        store.add_connection(Connection("lake", "delta", {"path": str(table.parent)}))
        mapping = from_columns(
            table.name, "uid", [(c, c) for c in ("plan", "title", "score", "purchases")]
        )
        store.add_source(Source("users", "lake", mapping))


def profilesync_sync(table: Path, home: Path) -> dict[str, Any]:
    from profilesync.store.duckdb import DuckDBStore
    from profilesync.sync import engine

    with DuckDBStore(home) as store:
        result = engine.sync(store, "users")
    return {"rows": result.read, "operations": result.operations}


def baseline_sync(table: Path, home: Path) -> dict[str, Any]:
    """load_cdf (or the snapshot) -> compact -> DuckDB MERGE on a primary key."""
    import duckdb

    home.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(home / "baseline.duckdb"))
    con.execute("CREATE TABLE IF NOT EXISTS state (version BIGINT)")
    row = con.execute("SELECT max(version) FROM state").fetchone()
    dt = DeltaTable(str(table))
    version = dt.version()
    if row is None or row[0] is None:
        snap = dt.to_pyarrow_table(columns=["uid", "plan", "title", "score", "purchases"])
        con.execute(
            "CREATE TABLE p (user_id VARCHAR PRIMARY KEY, plan VARCHAR, title VARCHAR, score DOUBLE, purchases BIGINT)"
        )
        con.execute("INSERT INTO p SELECT uid::VARCHAR, plan, title, score, purchases FROM snap")
        rows = snap.num_rows
    else:
        cdf = pa.RecordBatchReader.from_stream(
            dt.load_cdf(starting_version=int(row[0]) + 1, ending_version=version)
        ).read_all()
        rows = cdf.num_rows
        con.execute("BEGIN")
        con.execute("""CREATE TEMP TABLE c AS SELECT uid::VARCHAR AS user_id, plan::VARCHAR AS plan, title::VARCHAR AS title,
                       score, purchases, _change_type::VARCHAR AS t FROM cdf WHERE _change_type <> 'update_preimage'
                       QUALIFY row_number() OVER (PARTITION BY uid ORDER BY _commit_version DESC) = 1""")
        con.execute("""MERGE INTO p USING c ON p.user_id = c.user_id
                       WHEN MATCHED AND c.t = 'delete' THEN DELETE
                       WHEN MATCHED THEN UPDATE SET plan = c.plan, title = c.title, score = c.score, purchases = c.purchases
                       WHEN NOT MATCHED AND c.t <> 'delete' THEN INSERT VALUES (c.user_id, c.plan, c.title, c.score, c.purchases)""")
        con.execute("COMMIT")
    con.execute("INSERT INTO state VALUES (?)", [version])
    con.close()
    return {"rows": rows}


def scale_run(work: Path, users: int, changes: int) -> tuple[float, float]:
    """Incremental sync of ``changes`` updates into a store of ``users`` rows: (profilesync s, baseline s)."""
    table = work / f"scale{users}" / "users"
    build(table, users)
    home, base = work / f"scale{users}-home", work / f"scale{users}-base"
    profilesync_setup(table, home)
    measure(profilesync_sync, table, home, preload=OURS)
    measure(baseline_sync, table, base, preload=THEIRS)
    change(table, users, changes, 0, 0)
    ours = best_of(profilesync_sync, table, home=home, preload=OURS)
    theirs = best_of(baseline_sync, table, home=base, preload=THEIRS)
    return ours["seconds"], theirs["seconds"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--updates", type=int, default=100_000)
    ap.add_argument("--deletes", type=int, default=20_000)
    ap.add_argument("--inserts", type=int, default=30_000)
    ap.add_argument("--scale-small", type=int, default=100_000)
    ap.add_argument("--scale-large", type=int, default=5_000_000)
    ap.add_argument("--scale-changes", type=int, default=10_000)
    ap.add_argument("--skip-scale", action="store_true")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="profilesync-bench-"))
    try:
        table = work / "lake" / "users"
        build(table, args.users)
        profilesync_setup(table, work / "home")
        first = best_of(profilesync_sync, table, home=work / "home", preload=OURS)
        first_base = best_of(baseline_sync, table, home=work / "base", preload=THEIRS)
        changed = change(table, args.users, args.updates, args.deletes, args.inserts)
        incr = best_of(profilesync_sync, table, home=work / "home", preload=OURS)
        incr_base = best_of(baseline_sync, table, home=work / "base", preload=THEIRS)
        print(
            f"Delta table: {args.users:,} users; incremental: {args.updates:,} updates, {args.deletes:,} deletes, "
            f"{args.inserts:,} inserts ({changed:,} changed users)"
        )
        header()
        line("first sync", first, first_base, args.users)
        line("incremental sync", incr, incr_base, changed)
        print(
            f"(incremental rows/s counts changed users; the CDF held {incr['rows']:,} rows incl. pre-images; "
            f"profilesync metered {incr['operations']:,} operations)"
        )
        if not args.skip_scale:
            small = scale_run(work, args.scale_small, args.scale_changes)
            large = scale_run(work, args.scale_large, args.scale_changes)
            print(
                f"\nscale: {args.scale_changes:,} updates into a store of {args.scale_small:,} vs {args.scale_large:,} users"
            )
            print(f"{'':<22}{'small s':>10}{'large s':>10}{'large/small':>13}")
            print(
                f"{'profilesync':<22}{small[0]:>10.2f}{large[0]:>10.2f}{large[0] / small[0]:>13.2f}"
            )
            print(
                f"{'baseline MERGE':<22}{small[1]:>10.2f}{large[1]:>10.2f}{large[1] / small[1]:>13.2f}"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
