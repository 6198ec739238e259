"""Ingestion throughput through ``POST /2/httpapi`` on loopback, with retries, checked exactly once.

    python bench/ingest.py [--events 1000000] [--batch 1000] [--clients 4] [--retry 0.1]

Starts ``profilesync``'s app (uvicorn, one process) on a fresh home with one project, then
``--clients`` threads send pre-encoded batches of ``--batch`` events (every event has a
unique ``insert_id``). A ``--retry`` share of the batches is sent twice, as a client does
when it did not hear back. At the end the store must hold every acknowledged event exactly
once: the count, the distinct insert_ids and an anti-join against the ids sent are checked.

Sizes also come from the environment: BENCH_EVENTS, BENCH_BATCH, BENCH_CLIENTS.
Prints events/s, request latency percentiles and the check; a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa

from profilesync.events import store as event_store
from profilesync.store.duckdb import DuckDBStore

SERVER = """
import sys, uvicorn
from profilesync.server.app import create_app
app = create_app(sys.argv[1], tick_seconds=None)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)
"""
KINDS = ["Page Viewed", "Feature Used", "Purchase Completed", "Signed In"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bodies(key: str, events: int, batch: int) -> list[bytes]:
    """Pre-encoded request bodies, so the clients spend their time sending."""
    rng = random.Random(5)
    start = int(time.time() * 1000) - 86_400_000
    out = []
    for b in range(events // batch):
        docs = [
            {
                "event_type": KINDS[rng.randrange(4)],
                "user_id": f"user-{rng.randrange(1_000_000):07d}",
                "time": start + b * batch + i,
                "insert_id": f"ev-{b}-{i}",
                "event_properties": {"path": "/pricing", "amount": rng.randrange(100)},
                "platform": "Web",
            }
            for i in range(batch)
        ]
        out.append(json.dumps({"api_key": key, "events": docs}).encode())
    return out


def client(
    url: str, work: list[bytes], retry: float, seed: int, stats: dict[str, list[float]]
) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=url, timeout=120) as http:
        for body in work:
            for _attempt in range(2 if rng.random() < retry else 1):
                t = time.perf_counter()
                resp = http.post(
                    "/2/httpapi", content=body, headers={"Content-Type": "application/json"}
                )
                stats["latency"].append(time.perf_counter() - t)
                if resp.status_code != 200:
                    raise SystemExit(f"unexpected answer {resp.status_code}: {resp.text[:300]}")
                stats["acknowledged"].append(resp.json()["events_ingested"])
                stats["deduplicated"].append(resp.json()["events_deduplicated"])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(home), str(port)])
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the server did not start")


def check(home: Path, events: int, batch: int) -> dict[str, int]:
    """Every sent insert_id stored exactly once."""
    sent = pa.table(
        {"insert_id": [f"ev-{b}-{i}" for b in range(events // batch) for i in range(batch)]}
    )
    with DuckDBStore(home) as store:
        con = store.con
        con.register("sent", sent)
        total, distinct = con.execute(
            "SELECT count(*), count(DISTINCT insert_id) FROM events"
        ).fetchone()  # type: ignore[misc]
        missing = con.execute(
            "SELECT count(*) FROM sent ANTI JOIN events USING (insert_id)"
        ).fetchone()[0]  # type: ignore[index]
        extra = con.execute(
            "SELECT count(*) FROM events ANTI JOIN sent USING (insert_id)"
        ).fetchone()[0]  # type: ignore[index]
    return {"stored": total, "distinct": distinct, "missing": missing, "unexpected": extra}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--events", type=int, default=int(os.environ.get("BENCH_EVENTS", 1_000_000))
    )
    parser.add_argument("--batch", type=int, default=int(os.environ.get("BENCH_BATCH", 1000)))
    parser.add_argument("--clients", type=int, default=int(os.environ.get("BENCH_CLIENTS", 4)))
    parser.add_argument("--retry", type=float, default=0.1, help="share of batches sent twice")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        home = root / "home"
        with DuckDBStore(home) as store:
            _, key = event_store.create_project(store, "bench")
        print(f"encoding {args.events:,} events in batches of {args.batch:,} ...", flush=True)
        work = bodies(key, args.events, args.batch)
        proc, url = start(home)
        stats: dict[str, list[float]] = {"latency": [], "acknowledged": [], "deduplicated": []}
        threads = [
            threading.Thread(
                target=client, args=(url, work[i :: args.clients], args.retry, i, stats)
            )
            for i in range(args.clients)
        ]
        t0, server0, clients0 = time.perf_counter(), cpu_seconds(proc.pid), time.process_time()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - t0
        server_cpu = cpu_seconds(proc.pid) - server0
        clients_cpu = time.process_time() - clients0
        proc.terminate()
        proc.wait()
        result = check(home, args.events, args.batch)
        sent = sum(stats["acknowledged"])
        lat = np.array(stats["latency"]) * 1000
        print(
            f"clients {args.clients}, batches of {args.batch:,}, {len(lat):,} requests ({len(lat) - len(work):,} retries)"
        )
        print(
            f"  {sent:,} events acknowledged in {seconds:.1f} s: {sent / seconds:,.0f} events/s "
            f"({args.events / seconds:,.0f} unique events/s)"
        )
        print(
            f"  latency ms: p50 {np.percentile(lat, 50):.0f}, p95 {np.percentile(lat, 95):.0f}, max {lat.max():.0f}"
        )
        print(
            f"  CPU per 1,000 events: server {server_cpu * 1000 / (sent / 1000):.1f} ms, "
            f"clients {clients_cpu * 1000 / (sent / 1000):.1f} ms "
            f"(server busy {server_cpu / seconds:.2f} cores of {os.cpu_count()})"
        )
        print(f"  deduplicated on retry: {int(sum(stats['deduplicated'])):,}")
        print(f"  store: {result}")
        ok = result == {
            "stored": args.events,
            "distinct": args.events,
            "missing": 0,
            "unexpected": 0,
        }
        print("  exactly once:", "yes" if ok else "NO")
        if not ok:
            raise SystemExit(1)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
