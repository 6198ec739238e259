"""Segmentation over events joined with current profiles, against hand-written DuckDB SQL.

    python bench/segmentation.py [--events 10000000] [--profiles 1000000] [--repeat 5]

Builds a home whose profiles come from a real sync of a Delta table (``--profiles``
users with a plan and a country) and whose ``events`` table holds ``--events`` events
over 90 days (10% from users without a profile). Then, in the same process and with
warm caches, it times the question "events of two types per day, grouped by the users'
current plan, for users in two countries" three ways:

- profilesync, end to end: ``query.segmentation()`` (plan, SQL, rank groups, shape series);
- profilesync over HTTP: ``POST /api/query/segmentation`` on a local server;
- the hand-written DuckDB SQL a data engineer would write for the same answer;

checks that the answers are equal, and prints the medians and the ratio. The same for the
unique-users metric. Sizes also come from BENCH_EVENTS, BENCH_PROFILES and BENCH_REPEAT.
A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
from deltalake import write_deltalake

from profilesync import query as q
from profilesync.events import store as event_store
from profilesync.mapping import from_columns
from profilesync.model import Connection, Source
from profilesync.store.duckdb import DuckDBStore
from profilesync.sync import engine

PLANS = ["free", "starter", "growth", "business", "enterprise"]
COUNTRIES = ["US", "DE", "FR", "GB", "IN", "BR", "JP", "CA"]
KINDS = [
    "Page Viewed",
    "Feature Used",
    "Signed In",
    "Purchase Completed",
    "Invite Sent",
    "Exported",
]
END = date(2024, 6, 30)
DAYS = 90


def build_profiles(home: Path, lake: Path, profiles: int) -> str:
    """Sync ``profiles`` users from a Delta table; returns the profile table's name."""
    rng = np.random.default_rng(1)
    write_deltalake(
        str(lake / "prod" / "users"),
        pa.table(
            {
                "uid": pa.array(np.char.add("user-", np.arange(profiles).astype(str))),
                "plan": pa.array(np.array(PLANS)[rng.integers(0, len(PLANS), profiles)]),
                "country": pa.array(np.array(COUNTRIES)[rng.integers(0, len(COUNTRIES), profiles)]),
            }
        ),
        configuration={"delta.enableChangeDataFeed": "true"},
    )
    with DuckDBStore(home) as store:
        store.add_connection(Connection("lake", "delta", {"path": str(lake)}))
        mapping = from_columns("prod.users", "uid", [("plan", "Plan"), ("country", "Country")])
        source = store.add_source(Source("users", "lake", mapping))
        engine.sync(store, "users")
        return source.profile_table


def build_events(home: Path, events: int, profiles: int) -> None:
    """``events`` events in arrival order over ``DAYS`` days, generated inside DuckDB."""
    with DuckDBStore(home) as store:
        project, _ = event_store.create_project(store, "bench")
        users = int(profiles * 1.1)  # one user in eleven has no profile
        start = datetime.combine(END, datetime.min.time()) - timedelta(days=DAYS - 1)
        span_ms = DAYS * 86_400_000
        kinds = "[" + ", ".join(f"'{k}'" for k in KINDS) + "]"
        store.con.execute(
            f"""INSERT INTO events (project_id, event_type, user_id, "time", event_properties,
                insert_id, platform, received_at, batch_id)
            SELECT ?, {kinds}[1 + (hash(i, 1) % {len(KINDS)})::INT],
                'user-' || (hash(i, 2) % {users}), ?::TIMESTAMP + to_milliseconds((i * {span_ms} // {events})::BIGINT),
                json_object('amount', hash(i, 3) % 200), 'b-' || i, 'Web', now()::TIMESTAMP, 1 + i // 1000
            FROM range({events}) t(i)""",
            [project.id, start],
        )
        store.con.execute("CHECKPOINT")


QUERY = {
    "events": ["Page Viewed", "Feature Used"],
    "interval": "day",
    "start": (END - timedelta(days=DAYS - 1)).isoformat(),
    "end": END.isoformat(),
    "group_by": {"kind": "profile", "name": "Plan"},
    "filters": [{"kind": "profile", "name": "Country", "op": "is", "values": ["US", "DE"]}],
}


def hand_written(con: Any, table: str, metric: str) -> dict[tuple[str | None, str, str], int]:
    """The same answer in plain DuckDB SQL: per day, and for unique users also over the range
    (unique users do not add up across days, so a whole-range count is part of the answer)."""
    agg = "count(*)" if metric == "totals" else "count(DISTINCT e.user_id)"
    groups = (
        "ALL"
        if metric == "totals"
        else 'GROUPING SETS ((day, e.event_type, p."Plan"), (e.event_type, p."Plan"))'
    )
    rows = con.execute(
        f"""SELECT date_trunc('day', e."time") AS day, e.event_type, p."Plan", {agg}
        FROM events e JOIN {table} p ON p.user_id = e.user_id
        WHERE e.event_type IN ('Page Viewed', 'Feature Used')
          AND e."time" >= ?::TIMESTAMP AND e."time" < ?::TIMESTAMP + INTERVAL 1 DAY
          AND p."Country" IN ('US', 'DE')
        GROUP BY {groups}""",
        [QUERY["start"], QUERY["end"]],
    ).fetchall()
    return {(d.date().isoformat() if d else None, ev, plan): n for d, ev, plan, n in rows}


def as_cells(result: dict[str, Any]) -> dict[tuple[str | None, str, str], int]:
    cells = {
        (bucket[:10], s["event"], s["group"]): v
        for s in result["series"]
        for bucket, v in zip(result["buckets"], s["values"], strict=True)
        if v
    }
    if result["metric"] == "uniques":
        cells.update({(None, s["event"], s["group"]): s["total"] for s in result["series"]})
    return cells


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    fn()  # warm up
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def serve(home: Path, store: DuckDBStore) -> tuple[Any, str, str]:
    import uvicorn

    from profilesync.server.app import create_app

    store.close()
    app = create_app(home, tick_seconds=None)
    with app.state.store_lock:
        token = app.state.auth.issue_token(app.state.store)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}", token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--events", type=int, default=int(os.environ.get("BENCH_EVENTS", 10_000_000))
    )
    parser.add_argument(
        "--profiles", type=int, default=int(os.environ.get("BENCH_PROFILES", 1_000_000))
    )
    parser.add_argument("--repeat", type=int, default=int(os.environ.get("BENCH_REPEAT", 5)))
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-seg-"))
    try:
        home = root / "home"
        t = time.perf_counter()
        table = build_profiles(home, root / "lake", args.profiles)
        print(f"synced {args.profiles:,} profiles in {time.perf_counter() - t:.1f} s", flush=True)
        t = time.perf_counter()
        build_events(home, args.events, args.profiles)
        print(f"generated {args.events:,} events in {time.perf_counter() - t:.1f} s", flush=True)
        store = DuckDBStore(home)
        rows, expected_by_metric = [], {}
        for metric in ("totals", "uniques"):
            query = q.SegmentationQuery(**QUERY, metric=metric)
            ours, answer = timed(lambda query=query: q.segmentation(store, query), args.repeat)
            base, expected = timed(lambda m=metric: hand_written(store.con, table, m), args.repeat)
            equal = as_cells(answer) == expected
            expected_by_metric[metric] = expected
            rows.append((metric, ours, base, equal, len(answer["series"])))
        server, url, token = serve(home, store)
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=600
        ) as http:
            over_http, answer = timed(
                lambda: http.post("/api/query/segmentation", json=QUERY).json(), args.repeat
            )
        server.should_exit = True
        print(
            f"\nsegmentation of {args.events:,} events x {args.profiles:,} profiles "
            f"(2 event types, one series per type and plan, per day over {DAYS} days, by profile Plan, Country in US/DE), "
            f"median of {args.repeat}:"
        )
        print(f"{'metric':<9} {'profilesync':>12} {'hand SQL':>10} {'ratio':>7}  equal")
        for metric, ours, base, equal, series in rows:
            print(
                f"{metric:<9} {ours:>11.3f}s {base:>9.3f}s {ours / base:>7.2f}  {equal} ({series} series)"
            )
        print(
            f"totals through POST /api/query/segmentation: {over_http:.3f} s "
            f"(ratio {over_http / rows[0][2]:.2f} to hand SQL; equal: {as_cells(answer) == expected_by_metric['totals']})"
        )
        if not all(r[3] for r in rows):
            raise SystemExit("answers differ")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
