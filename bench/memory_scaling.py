"""Peak memory and wall time of a Delta first sync through the CLI, by table size.

    python bench/memory_scaling.py --rows 1000000 5000000 20000000

Each size: a Delta table of narrow rows (six columns), a fresh home, then one
``profilesync sync --json`` in its own process; wall time is that process's, peak MB its
peak RSS (``ru_maxrss`` of the child). ``--python`` runs another interpreter (another
checkout's, to compare), ``--limit`` sets ``sync_memory_limit`` first (for a build that has
that setting).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import write_deltalake

SETUP = """
import sys
from profilesync.mapping import from_columns
from profilesync.model import Connection, Source
from profilesync.store import open_store
with open_store(sys.argv[1]) as store:
    store.add_connection(Connection("lake", "delta", {"path": sys.argv[2]}))
    props = [(c, c.title()) for c in ("plan", "title", "score", "active", "country")]
    store.add_source(Source("users", "lake", from_columns("users", "uid", props)))
"""


def narrow(n: int, chunk: int = 2_000_000) -> pa.RecordBatchReader:
    schema = pa.schema(
        [
            ("uid", pa.int64()),
            ("plan", pa.string()),
            ("title", pa.string()),
            ("score", pa.float64()),
            ("active", pa.bool_()),
            ("country", pa.string()),
        ]
    )

    def batches():  # type: ignore[no-untyped-def]
        for start in range(0, n, chunk):
            ids = pa.array(range(start, min(n, start + chunk)), pa.int64())
            text = pc.cast(ids, pa.string())
            yield pa.record_batch(
                [
                    ids,
                    pc.if_else(pc.equal(pc.bit_wise_and(ids, 1), 0), "growth", "enterprise"),
                    pc.binary_join_element_wise("title-", text, ""),
                    pc.divide(pc.cast(ids, pa.float64()), 7.0),
                    pc.equal(pc.bit_wise_and(ids, 2), 0),
                    pc.if_else(pc.equal(pc.bit_wise_and(ids, 4), 0), "DE", "US"),
                ],
                schema=schema,
            )

    return pa.RecordBatchReader.from_batches(schema, batches())


def run(rows: int, python: str, limit: str | None, work: Path) -> dict[str, object]:
    lake, home = work / f"lake-{rows}", work / f"home-{rows}"
    write_deltalake(
        str(lake / "users"),
        narrow(rows),
        configuration={"delta.enableChangeDataFeed": "true"},
    )
    subprocess.run([python, "-c", SETUP, str(home), str(lake)], check=True)
    cli = [python, "-c", "from profilesync.cli import main; main()", "--home", str(home)]
    if limit:
        subprocess.run([*cli, "config", "set", "sync_memory_limit", limit], check=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    proc = subprocess.run([*cli, "sync", "users", "--json"], capture_output=True, text=True)
    wall = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode:
        raise SystemExit(f"sync of {rows:,} rows failed: {proc.stderr.strip()}")
    result = json.loads(proc.stdout[proc.stdout.index("{") :])
    return {
        "rows": rows,
        "wall_s": round(wall, 2),
        "rows_per_s": int(rows / wall),
        # ru_maxrss of children is the largest child so far: valid when sizes grow
        "peak_mb": round(peak / 1024) if peak > before else None,
        "reported_peak_mb": round((result.get("peak_memory_bytes") or 0) / 1e6) or None,
        "inserted": result["inserted"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--limit", default=None, help="sync_memory_limit to set first")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="memory-scaling-") as tmp:
        print("| rows | wall s | rows/s | peak MB | reported peak MB |")
        print("| ---: | ---: | ---: | ---: | ---: |")
        for rows in sorted(args.rows):
            r = run(rows, args.python, args.limit, Path(tmp))
            print(
                f"| {r['rows']:,} | {r['wall_s']} | {r['rows_per_s']:,} | {r['peak_mb']} "
                f"| {r['reported_peak_mb']} |",
                flush=True,
            )
            os.sync()


if __name__ == "__main__":
    main()
