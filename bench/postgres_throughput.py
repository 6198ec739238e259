"""Sync throughput on a PostgreSQL table, against a minimal hand-written wal2json -> DuckDB MERGE.

    python bench/postgres_throughput.py [--users 1000000] [--updates 100000] [--deletes 20000] [--inserts 30000]
        [--memory-limit 64MB] [--no-baseline]

Starts a throwaway PostgreSQL server (``profilesync.pgserver``: Debian's postgresql-15 with
wal2json, ``make sysdeps``) and fills ``public.users`` with ``--users`` rows. Phase 1: first
sync, a snapshot read in the transaction that imports the snapshot exported by the
creation of the replication slot. Phase 2: ``--updates`` updates, ``--deletes`` deletes and
``--inserts`` inserts in three transactions, then an incremental sync (peek the slot,
decode the wal2json rows, apply).

The baseline is the shortest correct script a data engineer would write, on a wal2json
slot of its own: its first sync COPYs the table out of the slot's exported snapshot into
Arrow and INSERTs it into a DuckDB table with a primary key; its incremental sync advances
the slot to its last committed position, peeks the changes with
``pg_logical_slot_peek_changes`` (format-version 2), decodes them with DuckDB's JSON
functions, keeps each user's last change and MERGEs them into that table.

Each figure is the best of three runs, each from the same starting state (a fresh copy of
its home; slots are only peeked, and each first sync re-creates its slot), timed inside a
fresh process after its imports (``bench/_harness.py``). Peak MB is the syncing process's
peak RSS; the server's memory is not counted on either side. Prints seconds, rows/s, peak
MB and the speed-up; it is a benchmark, not a test. Run it as a script from the repository
root (``make bench`` runs it with the other sync benchmarks).

A second table isolates the warehouse's part: the reader the next sync would read (the
snapshot before the first sync, the change window after), drained in a fresh process
and nothing applied, with its seconds, rows/s, peak MB and batches. ``--memory-limit``
runs every profilesync process inside a sync budget of that size (``profilesync.scratch``;
also stored as ``sync_memory_limit``), spilling under the home's ``tmp`` directory.
A profilesync run that fails (under a small budget) shows as ``failed:`` and its error
in its row. ``--no-baseline`` skips the baseline. To compare with another checkout, run
the script with that checkout's package first on ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from _harness import PROFILESYNC, Result, best_of, header, line

from profilesync import pgserver

COLUMNS = ("plan", "title", "score", "purchases")
OURS = (*PROFILESYNC, "profilesync.sources.postgres", "psycopg")
THEIRS = ("psycopg", "pyarrow.csv")
SLOT = "baseline"


# -- the warehouse --------------------------------------------------------------------------


def connect(dsn: str) -> Any:
    import psycopg

    return psycopg.connect(dsn, autocommit=True)


def build(dsn: str, users: int) -> None:
    with connect(dsn) as pg:
        pg.execute("SELECT setseed(0.17)")
        pg.execute(
            "CREATE TABLE public.users (uid bigint PRIMARY KEY, plan text, title text, score float8, purchases bigint)"
        )
        pg.execute(f"""INSERT INTO public.users
            SELECT 1000000 + i, (ARRAY['free', 'starter', 'growth', 'enterprise'])[1 + i % 4],
                   'title-' || (i % 500), random(), (random() * 100)::int
            FROM generate_series(0, {users - 1}) i""")
        pg.execute("VACUUM ANALYZE public.users")


def change(dsn: str, updates: int, deletes: int, inserts: int) -> int:
    """Updates and deletes spread through the table, then inserts: one transaction each."""
    with connect(dsn) as pg:
        pg.execute("SELECT setseed(0.42)")
        # a temporary table: its rows are not in the change stream
        pg.execute(
            f"CREATE TEMP TABLE picked AS SELECT uid, row_number() OVER () AS k FROM "
            f"(SELECT uid FROM public.users ORDER BY random() LIMIT {updates + deletes}) s"
        )
        pg.execute(f"""UPDATE public.users u SET plan = 'enterprise', score = random(),
                       purchases = purchases + 1 FROM picked p WHERE u.uid = p.uid AND p.k <= {updates}""")
        pg.execute(
            f"DELETE FROM public.users u USING picked p WHERE u.uid = p.uid AND p.k > {updates}"
        )
        pg.execute(f"""INSERT INTO public.users
            SELECT 5000000 + i, 'free', 'new', 0.5, 0 FROM generate_series(1, {inserts}) i""")
    return updates + deletes + inserts


# -- profilesync ------------------------------------------------------------------------------


def profilesync_setup(dsn: str, home: Path, limit: int | None) -> None:
    from profilesync.mapping import from_columns
    from profilesync.model import Connection, Source
    from profilesync.store.duckdb import DuckDBStore

    with DuckDBStore(home) as store:
        store.add_connection(Connection("pg", "postgres", {"dsn": dsn}))
        mapping = from_columns("public.users", "uid", [(c, c) for c in COLUMNS])
        store.add_source(Source("users", "pg", mapping))
        if limit is not None:
            store.set_setting("sync_memory_limit", f"{limit}B")


@contextmanager
def within(limit: int | None, home: Path) -> Iterator[None]:
    """A sync budget of ``limit`` bytes spilling under the home's ``tmp`` (a build
    without :mod:`profilesync.scratch` runs as it is)."""
    try:
        from profilesync.scratch import budget
    except ImportError:
        budget = None
    with nullcontext() if limit is None or budget is None else budget(limit, home / "tmp", "users"):
        yield


def profilesync_sync(limit: int | None, home: Path) -> Result:
    from profilesync.store.duckdb import DuckDBStore
    from profilesync.sync import engine

    with DuckDBStore(home) as store, within(limit, home):
        r = engine.sync(store, "users")
    return {"rows": r.read, "counts": (r.inserted, r.updated, r.deleted)}


def profilesync_read(limit: int | None, home: Path) -> Result:
    """Only the warehouse's part: drain the reader the next sync would read, apply nothing."""
    from profilesync.store.duckdb import DuckDBStore
    from profilesync.warehouses import open_warehouse

    with DuckDBStore(home) as store, within(limit, home):
        source = store.get_source("users")
        warehouse = open_warehouse(store.get_connection(source.connection), source.name)
        try:
            if source.checkpoint is None:
                changes = warehouse.snapshot(source.mapping)
            else:
                changes = warehouse.changes(source.mapping, source.checkpoint)
            rows = batches = 0
            for batch in changes.reader:
                rows, batches = rows + batch.num_rows, batches + 1
            del changes
        finally:
            warehouse.close()
    return {"rows": rows, "batches": batches}


# -- the baseline -----------------------------------------------------------------------------

_CREATE = "CREATE TABLE p (user_id VARCHAR PRIMARY KEY, plan VARCHAR, title VARCHAR, score DOUBLE, purchases BIGINT)"
# wal2json lists a row's columns in table order; a delete carries only the key (identity)
_DECODE = """CREATE TEMP TABLE c AS
    SELECT coalesce(v[2], v[7]) AS user_id, v[1] AS action, v[3] AS plan, v[4] AS title,
           v[5]::DOUBLE AS score, v[6]::BIGINT AS purchases
    FROM (SELECT n, json_extract_string(data, ['$.action', '$.columns[0].value', '$.columns[1].value',
                 '$.columns[2].value', '$.columns[3].value', '$.columns[4].value', '$.identity[0].value']) AS v
          FROM peeked)
    WHERE v[1] IN ('I', 'U', 'D')
    QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY n DESC) = 1"""
_MERGE = """MERGE INTO p USING c ON p.user_id = c.user_id
    WHEN MATCHED AND c.action = 'D' THEN DELETE
    WHEN MATCHED THEN UPDATE SET plan = c.plan, title = c.title, score = c.score, purchases = c.purchases
    WHEN NOT MATCHED AND c.action <> 'D' THEN INSERT VALUES (c.user_id, c.plan, c.title, c.score, c.purchases)"""


def copy_out(pg: Any, select: str, names: list[str], types: list[Any]) -> Any:
    """``COPY (select) TO STDOUT`` as CSV, parsed by Arrow."""
    import io

    import pyarrow.csv as pacsv

    with pg.cursor().copy(f"COPY ({select}) TO STDOUT (FORMAT csv)") as copy:
        data = b"".join(copy)
    return pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(column_names=names),
        convert_options=pacsv.ConvertOptions(column_types=dict(zip(names, types, strict=True))),
    )


def baseline_first(dsn: str, pg: Any, duck: Any) -> int:
    """A new slot, and the table as of the snapshot it exports."""
    import psycopg
    import pyarrow as pa

    pg.execute(
        f"SELECT pg_drop_replication_slot('{SLOT}') FROM pg_replication_slots WHERE slot_name = '{SLOT}'"
    )
    with psycopg.connect(dsn, autocommit=True, replication="database") as rep:
        row = rep.execute(
            f"CREATE_REPLICATION_SLOT {SLOT} LOGICAL wal2json (SNAPSHOT 'export')"
        ).fetchone()
        pg.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        pg.execute(f"SET TRANSACTION SNAPSHOT '{row[2]}'")
    names = ["uid", *COLUMNS]
    types = [pa.int64(), pa.string(), pa.string(), pa.float64(), pa.int64()]
    snap = copy_out(pg, f"SELECT {', '.join(names)} FROM public.users", names, types)
    pg.execute("COMMIT")
    position = pg.execute("SELECT %s::pg_lsn - '0/0'::pg_lsn", [row[1]]).fetchone()[0]
    duck.execute(_CREATE)
    duck.execute("INSERT INTO p SELECT uid::VARCHAR, plan, title, score, purchases FROM snap")
    duck.execute("INSERT INTO state VALUES (?)", [int(position)])
    return snap.num_rows


def baseline_changes(pg: Any, duck: Any, last: int) -> int:
    """Release what was applied, peek the rest, keep each user's last change, MERGE."""
    import pyarrow as pa

    pg.execute(f"SELECT pg_replication_slot_advance('{SLOT}', '0/0'::pg_lsn + %s::numeric)", [last])
    peeked = copy_out(  # noqa: F841  (DuckDB reads it by name)
        pg,
        f"""SELECT n, (lsn - '0/0'::pg_lsn)::int8, data FROM pg_logical_slot_peek_changes('{SLOT}', NULL, NULL,
            'format-version', '2', 'add-tables', 'public.users') WITH ORDINALITY AS c(lsn, xid, data, n)""",
        ["n", "lsn", "data"],
        [pa.int64(), pa.int64(), pa.string()],
    )
    duck.execute("BEGIN")
    duck.execute(_DECODE)
    duck.execute(_MERGE)
    duck.execute("INSERT INTO state SELECT max(lsn) FROM peeked HAVING count(*) > 0")
    duck.execute("COMMIT")
    return int(
        duck.execute(
            "SELECT count(*) FROM peeked WHERE data->>'$.action' IN ('I', 'U', 'D')"
        ).fetchone()[0]
    )


def baseline_sync(dsn: str, home: Path) -> Result:
    """The first sync when nothing was synced yet, an incremental one after."""
    import duckdb

    home.mkdir(parents=True, exist_ok=True)
    duck = duckdb.connect(str(home / "baseline.duckdb"))
    duck.execute("CREATE TABLE IF NOT EXISTS state (lsn BIGINT)")
    last = duck.execute("SELECT max(lsn) FROM state").fetchone()[0]
    with connect(dsn) as pg:
        rows = baseline_first(dsn, pg, duck) if last is None else baseline_changes(pg, duck, last)
    profiles = duck.execute("SELECT count(*) FROM p").fetchone()[0]
    duck.close()
    return {"rows": rows, "profiles": profiles}


# -- report -----------------------------------------------------------------------------------


def expect(what: str, got: Any, wanted: Any) -> None:
    """A benchmark of a wrong result is worthless: stop when a side got it wrong."""
    if got != wanted:
        raise SystemExit(f"{what}: got {got}, expected {wanted}")


def run(work: Path, dsn: str, args: argparse.Namespace) -> None:
    limit = parse_limit(args.memory_limit)
    build(dsn, args.users)
    profilesync_setup(dsn, work / "home", limit)
    home, base = work / "home", work / "base"
    got: dict[str, Result] = {"snapshot": attempt(profilesync_read, limit, home=home)}
    got["first"] = attempt(profilesync_sync, limit, home=home)
    if not args.no_baseline:
        got["first_base"] = best_of(baseline_sync, dsn, home=base, preload=THEIRS)
    changed = change(dsn, args.updates, args.deletes, args.inserts)
    got["window"] = attempt(profilesync_read, limit, home=home)
    got["incr"] = attempt(profilesync_sync, limit, home=home)
    if not args.no_baseline:
        got["incr_base"] = best_of(baseline_sync, dsn, home=base, preload=THEIRS)
    for key, label, wanted in (
        ("first", "first sync (inserted, updated, deleted)", (args.users, 0, 0)),
        (
            "incr",
            "incremental (inserted, updated, deleted)",
            (args.inserts, args.updates, args.deletes),
        ),
        ("snapshot", "snapshot rows read", args.users),
        ("window", "change rows read", changed),
    ):
        if "error" not in got[key]:
            expect(f"profilesync {label}", got[key].get("counts", got[key]["rows"]), wanted)
    if "incr_base" in got:
        profiles = args.users - args.deletes + args.inserts
        expect("baseline profiles", got["incr_base"]["profiles"], profiles)
    print(
        f"PostgreSQL table: {args.users:,} users; incremental: {args.updates:,} updates, {args.deletes:,} deletes, "
        f"{args.inserts:,} inserts ({changed:,} changed users); sync budget: {args.memory_limit or 'default'}"
    )
    report(got, args.users, changed)


def attempt(fn: Any, limit: int | None, *, home: Path) -> Result:
    """``best_of`` a profilesync run, or the last line of the error that stopped it (a
    sync may fail under a small budget: the table says so instead of ending the run)."""
    try:
        return best_of(fn, limit, home=home, preload=OURS)
    except RuntimeError as exc:
        named = [
            row for row in str(exc).splitlines() if re.match(r"[\w.]+(Error|Exception): ", row)
        ]
        return {"error": (named or ["(no message)"])[-1][:160]}


def report(got: dict[str, Result], users: int, changed: int) -> None:
    if "first_base" in got and "error" not in got["first"] and "error" not in got["incr"]:
        header()
        line("first sync", got["first"], got["first_base"], users)
        line("incremental sync", got["incr"], got["incr_base"], changed)
        print(
            f"(incremental rows/s counts changed users, read as {got['incr_base']['rows']:,} "
            "wal2json rows; peak MB is the syncing process, not the server)"
        )
    else:
        reads_header("whole sync")
        reads_line("first sync", got["first"], users)
        reads_line("incremental sync", got["incr"], changed)
    reads_header("warehouse read only")
    reads_line("snapshot", got["snapshot"], users)
    reads_line("change window", got["window"], changed)


def reads_header(title: str) -> None:
    print(f"{title:<22}{'seconds':>14}{'rows/s':>13}{'peak MB':>9}{'batches':>9}")


def reads_line(label: str, result: Result, rows: int) -> None:
    if "error" in result:
        print(f"{label:<22}{'failed: ' + result['error']:>14}")
        return
    batches = result.get("batches")
    print(
        f"{label:<22}{result['seconds']:>14.2f}{rows / result['seconds']:>13,.0f}"
        f"{result['peak_mb']:>9.0f}{'' if batches is None else f'{batches:,}':>9}"
    )


def parse_limit(text: str | None) -> int | None:
    """``64MB`` -> bytes (decimal units, as ``sync_memory_limit`` reads them)."""
    if text is None:
        return None
    units = {"kb": 1000, "mb": 1000**2, "gb": 1000**3, "b": 1}
    lowered = text.strip().lower()
    for unit, size in units.items():
        if lowered.endswith(unit):
            return int(float(lowered[: -len(unit)]) * size)
    return int(lowered)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--updates", type=int, default=100_000)
    ap.add_argument("--deletes", type=int, default=20_000)
    ap.add_argument("--inserts", type=int, default=30_000)
    ap.add_argument("--memory-limit", help="sync budget, e.g. 64MB (default: the build's)")
    ap.add_argument("--no-baseline", action="store_true", help="measure profilesync only")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="profilesync-bench-"))
    server = pgserver.start()
    try:
        run(work, server.dsn(), args)
    finally:
        server.stop()
        shutil.rmtree(server.socket_dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
