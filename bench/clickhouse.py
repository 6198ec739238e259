"""The ClickHouse store (chdb) side by side with the DuckDB store, on the same data in one run.

    python bench/clickhouse.py [--events 10M] [--profiles 1M] [--repeat 5]
                               [--ingest-events 1M] [--sync-rows 5M] [--reps 3]
                               [--parts segmentation,ingest,sync]

Three parts (``--parts`` picks some), each contender in a fresh process (``_harness``):

- ``segmentation``: ``--events`` events over 90 days (one in eleven from a user without a
  profile, generated once by DuckDB into a Parquet file and loaded into both stores) and
  ``--profiles`` profiles synced from a Delta table into each store. With warm caches, the
  median of ``--repeat`` runs of ``query.segmentation()`` of "Page Viewed and Feature Used
  per day, grouped by the users' current plan, for users in two countries" (totals, then
  unique users) on chdb and on the DuckDB store, against the hand-written ClickHouse SQL a
  data engineer would write over the same chdb tables (and the hand-written DuckDB SQL of
  ``bench/segmentation.py`` over the DuckDB store). Every answer is checked equal.
- ``ingest``: ``profilesync events import`` (the library call behind it) of a Parquet file
  of ``--ingest-events`` events in the HTTP V2 shape into a fresh home of each backend:
  events/s, peak MB; the store must then hold every event.
- ``sync``: a Delta first sync of ``--sync-rows`` users (``engine.sync.sync``) into each
  backend: seconds, rows/s, peak MB; the profiles are then checked against the table.

``ingest`` and ``sync`` figures are the median of ``--reps`` runs, the backends taking
turns. The load average is printed before and after (other work on the machine moves the
figures). Results are written as JSON under ``bench/out/``. A benchmark, not a test; sizes
up to the issue's 100M events x 10M profiles and 10M sync rows are flags away.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from _harness import Result, measure
from _peers_contenders import COLUMNS, OUT, build_delta, size
from deltalake import DeltaTable, write_deltalake
from segmentation import COUNTRIES, DAYS, END, KINDS, PLANS, QUERY, as_cells, timed
from segmentation import hand_written as duckdb_hand_written

BACKENDS = ("duckdb", "chdb")
PRELOAD: tuple[str, ...] = ("profilesync.store.clickhouse", "profilesync.engine.sync", "chdb")
Cells = dict[tuple[str | None, str, str], int]

# -- data --------------------------------------------------------------------------------


def events_file(path: Path, events: int, users: int, start: datetime, span_ms: int) -> None:
    """``events`` events in arrival order from ``start`` over ``span_ms``, by ``users``
    users, each with its insert_id, written to Parquet by DuckDB (the same file for both
    stores; ``bench/segmentation.py``'s generator)."""
    import duckdb

    kinds = "[" + ", ".join(f"'{k}'" for k in KINDS) + "]"
    with duckdb.connect() as con:
        con.execute(
            f"""COPY (SELECT {kinds}[1 + (hash(i, 1) % {len(KINDS)})::INT] AS event_type,
                'user-' || (hash(i, 2) % {users}) AS user_id,
                ?::TIMESTAMP + to_milliseconds((i * {span_ms} // {events})::BIGINT) AS "time",
                json_object('amount', hash(i, 3) % 200)::VARCHAR AS event_properties,
                'b-' || i AS insert_id, 'Web' AS platform
            FROM range({events}) t(i)) TO '{path}' (FORMAT parquet, ROW_GROUP_SIZE 1000000)""",
            [start],
        )


def profiles_table(path: Path, profiles: int) -> None:
    """``profiles`` users with a plan and a country, change data feed on."""
    rng = np.random.default_rng(1)
    write_deltalake(
        str(path),
        pa.table(
            {
                "uid": pa.array(np.char.add("user-", np.arange(profiles).astype(str))),
                "plan": pa.array(np.array(PLANS)[rng.integers(0, len(PLANS), profiles)]),
                "country": pa.array(np.array(COUNTRIES)[rng.integers(0, len(COUNTRIES), profiles)]),
            }
        ),
        configuration={"delta.enableChangeDataFeed": "true"},
    )


# -- segmentation: homes and contenders ---------------------------------------------------


def build_home(backend: str, home: Path, lake: Path, events: Path) -> Result:
    """Sync the profiles, then load the events file into the store's events table as it
    stands (a committed batch: no ingestion work is timed here)."""
    from profilesync.engine.sync import sync
    from profilesync.events.projects import create_project
    from profilesync.mapping import from_columns
    from profilesync.model import Connection, Source
    from profilesync.store import open_store

    with open_store(home, backend=backend) as store:
        store.add_connection(Connection("lake", "delta", {"path": str(lake)}))
        mapping = from_columns("prod.users", "uid", [("plan", "Plan"), ("country", "Country")])
        store.add_source(Source("users", "lake", mapping))
        started = time.perf_counter()
        sync(store, "users")
        synced = time.perf_counter() - started
        project, _ = create_project(store, "bench")
        started = time.perf_counter()
        for batch in pq.ParquetFile(events).iter_batches(batch_size=1_000_000):
            _load(store, backend, project.id, pa.Table.from_batches([batch]))
        return {"sync_seconds": synced, "load_seconds": time.perf_counter() - started}


def _load(store: Any, backend: str, project_id: int, rows: pa.Table) -> None:
    received = datetime(2024, 7, 1)
    rows = rows.append_column("project_id", pa.array([project_id] * rows.num_rows, pa.int64()))
    rows = rows.append_column("received_at", pa.array([received] * rows.num_rows))
    # batch 0: never above the committed batch, so the chdb store keeps it on open
    rows = rows.append_column("batch_id", pa.array([0] * rows.num_rows, pa.int64()))
    if backend == "chdb":
        store.driver.insert_arrow("events", rows.column_names, rows)
        return
    store.con.register("_rows", rows)
    try:
        store.con.execute("INSERT INTO events BY NAME SELECT * FROM _rows")
    finally:
        store.con.unregister("_rows")


def ask_profilesync(backend: str, home: Path, repeat: int) -> Result:
    """Each metric through ``query.segmentation()``: the median seconds and the answer."""
    from profilesync import query as q
    from profilesync.store import open_store

    out: Result = {}
    with open_store(home) as store:
        assert store.capabilities.dialect == ("clickhouse" if backend == "chdb" else "duckdb")
        for metric in ("totals", "uniques"):
            question = q.SegmentationQuery.model_validate({**QUERY, "metric": metric})
            seconds, answer = timed(partial(q.segmentation, store, question), repeat)
            out[metric] = {"seconds": seconds, "cells": as_cells(answer)}
    return out


#: the hand-written ClickHouse question: the source's table with FINAL (its newest version
#: of each user, deletes left out), joined to the events
HAND_CLICKHOUSE = """
SELECT toStartOfDay(e.time) AS day, e.event_type, p.Plan, {agg} AS n
FROM events AS e
INNER JOIN (
    SELECT user_id, Plan FROM {table} FINAL WHERE _is_deleted = 0 AND Country IN ('US', 'DE')
) AS p ON p.user_id = e.user_id
WHERE e.event_type IN ('Page Viewed', 'Feature Used')
  AND e.time >= toDateTime64({{start:String}}, 6)
  AND e.time < toDateTime64({{end:String}}, 6) + INTERVAL 1 DAY
GROUP BY {groups}
SETTINGS group_by_use_nulls = 1
"""


def clickhouse_hand_written(store: Any, table: str, metric: str) -> Cells:
    agg = "count()" if metric == "totals" else "uniqExact(e.user_id)"
    groups = (
        "day, e.event_type, p.Plan"
        if metric == "totals"
        else "GROUPING SETS ((day, e.event_type, p.Plan), (e.event_type, p.Plan))"
    )
    sql = HAND_CLICKHOUSE.format(agg=agg, table=table, groups=groups)
    rows = store.driver.query_arrow(sql, {"start": QUERY["start"], "end": QUERY["end"]})
    return {
        (_day(d), event, plan): n
        for d, event, plan, n in zip(*(c.to_pylist() for c in rows.columns), strict=True)
    }


def _day(moment: datetime | int | None) -> str | None:
    """A bucket as its ISO day (a ``DateTime`` comes over Arrow as seconds since the epoch)."""
    if isinstance(moment, int):
        moment = datetime.fromtimestamp(moment, UTC)
    return moment.date().isoformat() if moment else None


def ask_by_hand(backend: str, home: Path, repeat: int) -> Result:
    """Each metric in hand-written SQL over the store's own tables."""
    from profilesync.store import open_store

    out: Result = {}
    with open_store(home) as store:
        table = store.get_source("users").profile_table
        for metric in ("totals", "uniques"):

            def ask(m: str = metric) -> Cells:
                if backend == "chdb":
                    return clickhouse_hand_written(store, table, m)
                return duckdb_hand_written(store.con, table, m)

            seconds, cells = timed(ask, repeat)
            out[metric] = {"seconds": seconds, "cells": cells}
    return out


def segmentation(work: Path, events: int, profiles: int, repeat: int) -> Result:
    """Build both homes on the same data, then ask each contender in its own process."""
    lake, data = work / "lake", work / "events.parquet"
    started = time.perf_counter()
    profiles_table(lake / "prod" / "users", profiles)
    first = datetime.combine(END, datetime.min.time()) - timedelta(days=DAYS - 1)
    # one user in eleven has no profile
    events_file(data, events, int(profiles * 1.1), first, DAYS * 86_400_000)
    print(
        f"generated {profiles:,} profiles and {events:,} events in "
        f"{time.perf_counter() - started:.1f} s",
        flush=True,
    )
    built: Result = {}
    for backend in BACKENDS:
        home = work / f"seg-{backend}"
        built[backend] = measure(build_home, backend, home, lake, data, preload=PRELOAD)
        print(
            f"  {backend}: synced {profiles:,} profiles in {built[backend]['sync_seconds']:.1f} s,"
            f" loaded the events in {built[backend]['load_seconds']:.1f} s",
            flush=True,
        )
    data.unlink()
    asked = {
        name: measure(fn, backend, work / f"seg-{backend}", repeat, preload=PRELOAD)
        for name, fn, backend in (
            ("profilesync on chdb", ask_profilesync, "chdb"),
            ("profilesync on duckdb", ask_profilesync, "duckdb"),
            ("hand ClickHouse SQL", ask_by_hand, "chdb"),
            ("hand DuckDB SQL", ask_by_hand, "duckdb"),
        )
    }
    for backend in BACKENDS:
        shutil.rmtree(work / f"seg-{backend}", ignore_errors=True)
    return {"built": built, "asked": asked}


def report_segmentation(out: Result, events: int, profiles: int, repeat: int) -> list[str]:
    """Print the medians, the ratios and whether every answer is the hand-written one."""
    asked, problems = out["asked"], []
    print(
        f"\nsegmentation of {events:,} events x {profiles:,} profiles (2 event types per day "
        f"over {DAYS} days, by profile Plan, Country in US/DE), median of {repeat}:"
    )
    print(
        f"{'metric':<9}{'chdb':>9}{'duckdb':>9}{'hand CH':>9}{'hand DuckDB':>13}"
        f"{'chdb/hand CH':>14}{'duckdb/hand':>13}  equal"
    )
    for metric in ("totals", "uniques"):
        med = {k: v[metric]["seconds"] for k, v in asked.items()}
        expected = asked["hand ClickHouse SQL"][metric]["cells"]
        equal = all(v[metric]["cells"] == expected for v in asked.values())
        if not equal:
            problems.append(f"segmentation {metric}: the answers differ")
        ch, dd = med["profilesync on chdb"], med["profilesync on duckdb"]
        hand_ch, hand_dd = med["hand ClickHouse SQL"], med["hand DuckDB SQL"]
        out.setdefault("medians", {})[metric] = med
        print(
            f"{metric:<9}{ch:>8.3f}s{dd:>8.3f}s{hand_ch:>8.3f}s{hand_dd:>12.3f}s"
            f"{ch / hand_ch:>14.2f}{dd / hand_dd:>13.2f}  {equal}"
        )
    for name, r in asked.items():
        print(f"  {name}: peak {r['peak_mb']:.0f} MB")
    return problems


# -- ingestion and sync: contenders --------------------------------------------------------


def new_project(backend: str, home: Path) -> Result:
    from profilesync.events.projects import create_project
    from profilesync.store import open_store

    with open_store(home, backend=backend) as store:
        create_project(store, "bench")
    return {}


def run_import(file: Path, home: Path) -> Result:
    from profilesync.events.importer import import_file as import_events
    from profilesync.store import open_store

    with open_store(home) as store:
        result = import_events(store, file, project="bench")
    return {"rows": result.imported, "rejected": result.rejected}


def count_events(home: Path) -> Result:
    from sqlglot import exp

    from profilesync.store import open_store

    with open_store(home) as store:
        query = exp.select("count(*)", "count(DISTINCT insert_id)").from_("events")
        return {"events": list(store.read(query)[0])}


def new_source(table: Path, backend: str, home: Path) -> Result:
    from profilesync.mapping import from_columns
    from profilesync.model import Connection, Source
    from profilesync.store import open_store

    with open_store(home, backend=backend) as store:
        store.add_connection(Connection("wh", "delta", {"path": str(table.parent)}))
        store.add_source(
            Source("users", "wh", from_columns(table.name, "uid", [(c, c) for c in COLUMNS]))
        )
    return {}


def run_sync(home: Path) -> Result:
    from profilesync.engine.sync import sync
    from profilesync.store import open_store

    with open_store(home) as store:
        result = sync(store, "users")
    return {"rows": result.read, "rejected": result.rejected}


#: what the sync check compares, the same on the warehouse and on either store
FINGERPRINT = (
    "count(*)",
    "count(DISTINCT user_id)",
    "sum(purchases)",
    "sum(length(title))",
    "round(sum(score), 3)",
    "count(DISTINCT plan)",
)


def store_fingerprint(home: Path) -> Result:
    from sqlglot import exp

    from profilesync.store import open_store

    with open_store(home) as store:
        relation = store.profile_relation(store.get_source("users"))
        with store.reader() as reader:
            row = reader.read(exp.select(*FINGERPRINT).from_(relation))[0]
    return {"fingerprint": [float(v) for v in row]}


def delta_fingerprint(table: Path) -> list[float]:
    import duckdb

    snapshot = DeltaTable(str(table)).to_pyarrow_table()  # noqa: F841 - read by DuckDB
    with duckdb.connect() as con:
        cast = ", ".join(FINGERPRINT).replace("user_id", "uid::VARCHAR")
        row = con.execute(f"SELECT {cast} FROM snapshot").fetchone()
    return [float(v) for v in row or ()]


def turns(
    setup: tuple[Callable[..., Result], tuple[Any, ...]],
    run: tuple[Callable[..., Result], tuple[Any, ...]],
    check: Callable[[Path], str | None],
    work: Path,
    reps: int,
) -> dict[str, Result]:
    """The median of ``reps`` runs per backend, the backends taking turns, each run in a
    fresh process on a home of its own made by ``setup(*args, backend, home)`` (a chdb home
    is not copied as ``_harness.interleaved`` copies homes: its data directory holds
    symbolic links that ``shutil.copytree`` turns into directories ClickHouse refuses)."""
    runs: dict[str, list[Result]] = {b: [] for b in BACKENDS}
    for rep in range(reps):
        for backend in BACKENDS:
            home = work / f"{backend}-{rep}"
            measure(setup[0], *setup[1], backend, home, preload=PRELOAD)
            try:
                result = measure(run[0], *run[1], home, preload=PRELOAD)
                result["error"] = check(home)
            except RuntimeError as exc:
                result = {"seconds": math.nan, "peak_mb": math.nan, "error": str(exc)}
            if result["error"]:
                print(f"\n!!! CORRECTNESS FAILURE: {backend}, rep {rep + 1}: {result['error']}\n")
            runs[backend].append(result)
            shutil.rmtree(home, ignore_errors=True)
    return {
        backend: {
            "seconds": statistics.median(r["seconds"] for r in rs),
            "runs": [r["seconds"] for r in rs],
            "peak_mb": max(r["peak_mb"] for r in rs),
            "errors": [r["error"] for r in rs if r["error"]],
        }
        for backend, rs in runs.items()
    }


def ingestion(work: Path, events: int, reps: int) -> dict[str, Result]:
    file = work / "import.parquet"
    yesterday = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=1)
    events_file(file, events, 1_000_000, yesterday, 86_400_000)

    def check(home: Path) -> str | None:
        stored = measure(count_events, home, preload=PRELOAD)["events"]
        return None if stored == [events, events] else f"stored (events, ids) {stored}"

    out = turns((new_project, ()), (run_import, (file,)), check, work, reps)
    file.unlink()
    return out


def first_sync(work: Path, rows: int, reps: int) -> dict[str, Result]:
    table = work / "sync" / "users"
    build_delta(table, rows)
    expected = delta_fingerprint(table)

    def check(home: Path) -> str | None:
        got = measure(store_fingerprint, home, preload=PRELOAD)["fingerprint"]
        return None if got == expected else f"store {got} != warehouse {expected}"

    out = turns((new_source, (table,)), (run_sync, ()), check, work, reps)
    shutil.rmtree(table.parent, ignore_errors=True)
    return out


def report_turns(title: str, unit: str, out: dict[str, Result], rows: int) -> list[str]:
    print(f"\n{title}, median of {len(out['duckdb']['runs'])}:")
    print(f"{'backend':<9}{'seconds':>9}{unit + '/s':>14}{'peak MB':>9}  runs")
    for backend, r in out.items():
        runs = ", ".join(f"{s:.1f}" for s in r["runs"])
        print(
            f"{backend:<9}{r['seconds']:>9.2f}{rows / r['seconds']:>14,.0f}"
            f"{r['peak_mb']:>9.0f}  {runs}{'  FAIL' if r['errors'] else ''}"
        )
    ratio = out["chdb"]["seconds"] / out["duckdb"]["seconds"]
    print(f"chdb / duckdb time: {ratio:.2f}")
    return [f"{title}: {b}: {e[0]}" for b, r in out.items() if (e := r["errors"])]


# -- main -----------------------------------------------------------------------------------


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=size, default=10_000_000)
    parser.add_argument("--profiles", type=size, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5, help="segmentation runs per contender")
    parser.add_argument("--ingest-events", type=size, default=1_000_000)
    parser.add_argument("--sync-rows", type=size, default=5_000_000)
    parser.add_argument("--reps", type=int, default=3, help="ingest and sync runs per backend")
    parser.add_argument("--parts", default="segmentation,ingest,sync")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    saved: Result = {"args": vars(args), "load_before": load()}
    problems: list[str] = []
    print(f"load average before: {saved['load_before']}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="bench-ch-"))
    try:
        if "segmentation" in parts:
            out = segmentation(work, args.events, args.profiles, args.repeat)
            problems += report_segmentation(out, args.events, args.profiles, args.repeat)
            saved["segmentation"] = out["medians"] | {"built": out["built"]}
        if "ingest" in parts:
            ingested = ingestion(work, args.ingest_events, args.reps)
            title = f"events import of {args.ingest_events:,} events (Parquet, HTTP V2 shape)"
            problems += report_turns(title, "events", ingested, args.ingest_events)
            saved["ingest"] = ingested
        if "sync" in parts:
            synced = first_sync(work, args.sync_rows, args.reps)
            title = f"Delta first sync of {args.sync_rows:,} users"
            problems += report_turns(title, "rows", synced, args.sync_rows)
            saved["sync"] = synced
    finally:
        shutil.rmtree(work, ignore_errors=True)
    saved["load_after"] = load()
    print(f"\nload average after: {saved['load_after']}")
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"clickhouse-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(saved, indent=2, default=str))
    print(f"results: {path}")
    if problems:
        print("\n".join(["", "!!! CORRECTNESS FAILURES:", *problems]), file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
