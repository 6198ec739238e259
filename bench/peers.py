"""profilesync side by side with its peers, on the same data in one run.

    python bench/peers.py [--rows 1M,5M] [--reps 3] [--workloads w1,w2,w3,diff]
    python bench/peers.py --scaling 1M,5M,20M [--reps 1]

Workloads (Delta tables with change data feed, except ``diff``):

- ``w1``: first sync of a table of each ``--rows`` size (up to 50M);
- ``w2``: 100,000 updates, 20,000 deletes and 30,000 inserts into ``--w2-rows`` users;
- ``w3``: 10,000 updates scattered through stores of ``--w3-sizes`` (100k and 5M): the
  ratio of the two times shows whether a sync costs what the changes cost or what the
  table costs;
- ``diff``: resync of a ``--diff-rows`` DuckDB table after 1% of its users changed
  (``--strategy diff``: every row is read again).

Contenders: profilesync through its library (``open_store`` + ``engine.sync.sync``); the
raw no-PK path (snapshot -> bulk insert; changes -> last change per user -> delete by join
+ append, no primary key; a diff is a full reload); the raw ``MERGE`` into a table with a
primary key (``sync_throughput.py``'s and ``diff_throughput.py``'s baselines); dlt with
Arrow input, ``merge`` disposition, ``user_id`` primary key and a hard-delete column (a
diff is dlt's ``replace``). Each run is timed in a fresh process after its imports; peak
MB is that process's own peak RSS (VmHWM). The contenders take turns within each rep and
each figure is the median of ``--reps``. After every run the contender's table is checked
equal to the warehouse (row count, distinct users and an order-free hash of every row);
a failure is printed loudly and its figure marked ``FAIL``.

``--scaling`` runs profilesync's W1 alone at each size and prints rows vs seconds vs peak
MB. Results are written as JSON under ``bench/out/`` (plus a PNG of the scaling run when
matplotlib is installed). It is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _harness import Result, interleaved, measure
from _peers_contenders import (
    NAMES,
    OUT,
    PRELOAD,
    build_delta,
    build_duckdb,
    change_delta,
    change_duckdb,
    checker,
    delta_fingerprint,
    dlt_diff,
    dlt_sync,
    duckdb_fingerprint,
    label,
    merge_pk_diff,
    profilesync_setup,
    profilesync_sync,
    raw_diff,
    raw_sync,
    size,
)
from sync_throughput import baseline_sync as merge_pk_sync

# -- workloads ----------------------------------------------------------------------------


def contenders(kind: str, source: Path) -> dict[str, tuple[Callable[..., Result], tuple, tuple]]:
    fns: dict[str, Callable[..., Result]] = (
        {
            "profilesync": profilesync_sync,
            "raw no-PK": raw_sync,
            "raw MERGE+PK": merge_pk_sync,
            "dlt": dlt_sync,
        }
        if kind == "delta"
        else {
            "profilesync": profilesync_sync,
            "raw no-PK": raw_diff,
            "raw MERGE+PK": merge_pk_diff,
            "dlt": dlt_diff,
        }
    )
    return {name: (fns[name], (source,), PRELOAD[name]) for name in NAMES}


def fresh_homes(work: Path, tag: str, kind: str, source: Path) -> dict[str, Path]:
    homes = {name: work / f"{tag}-{name.replace(' ', '_').replace('+', '')}" for name in NAMES}
    for home in homes.values():
        shutil.rmtree(home, ignore_errors=True)
    measure(profilesync_setup, kind, source, homes["profilesync"])
    return homes


def first_syncs(kind: str, source: Path, homes: dict[str, Path]) -> None:
    """One untimed first sync per contender: the state an incremental run starts from."""
    for name, (fn, args, preload) in contenders(kind, source).items():
        measure(fn, *args, homes[name], preload=preload)


def run_w1(work: Path, users: int, reps: int, names: tuple[str, ...] = NAMES) -> dict[str, Result]:
    table = work / f"w1-{users}" / "users"
    build_delta(table, users)
    homes = fresh_homes(work, f"w1-{users}", "delta", table)
    chosen = {k: v for k, v in contenders("delta", table).items() if k in names}
    out = interleaved(chosen, homes, reps, checker(delta_fingerprint(table)))
    shutil.rmtree(table.parent, ignore_errors=True)
    return out


def run_changes(
    work: Path, tag: str, users: int, updates: int, deletes: int, inserts: int, reps: int
) -> dict[str, Result]:
    table = work / tag / "users"
    build_delta(table, users)
    homes = fresh_homes(work, tag, "delta", table)
    first_syncs("delta", table, homes)
    change_delta(table, users, updates, deletes, inserts)
    out = interleaved(contenders("delta", table), homes, reps, checker(delta_fingerprint(table)))
    for home in homes.values():
        shutil.rmtree(home, ignore_errors=True)
    shutil.rmtree(table.parent, ignore_errors=True)
    return out


def run_diff(work: Path, users: int, reps: int) -> dict[str, Result]:
    warehouse = work / "diff-warehouse.duckdb"
    build_duckdb(warehouse, users)
    homes = fresh_homes(work, "diff", "duckdb", warehouse)
    first_syncs("duckdb", warehouse, homes)
    change_duckdb(warehouse, users)
    out = interleaved(
        contenders("duckdb", warehouse), homes, reps, checker(duckdb_fingerprint(warehouse))
    )
    for home in homes.values():
        shutil.rmtree(home, ignore_errors=True)
    return out


# -- report -------------------------------------------------------------------------------


def figure(r: Result) -> str:
    return f"{r['seconds']:.2f}" + (" FAIL" if r["errors"] else "")


def print_table(rows: list[tuple[str, int, int, dict[str, Result]]]) -> None:
    """workload, table rows, rows counted for rows/s, results by contender."""
    print(
        f"\n{'workload':<26}{'rows':>6}  {'contender':<14}{'s (median)':>12}{'rows/s':>12}{'peak MB':>9}  runs"
    )
    for workload, n, counted, results in rows:
        for name, r in results.items():
            runs = " ".join(f"{s:.2f}" for s in r["runs"])
            print(
                f"{workload:<26}{label(n):>6}  {name:<14}{figure(r):>12}"
                f"{counted / r['seconds']:>12,.0f}{r['peak_mb']:>9.0f}  [{runs}]"
            )


def verdict(
    text: str, value: float, target: float, at_most: bool, failed: bool = False
) -> tuple[str, str, str, str]:
    met = value <= target if at_most else value >= target
    state = "INVALID (check failed)" if failed else ("met" if met else "missed")
    return text, f"{value:.2f}", ("<= " if at_most else ">= ") + f"{target:g}", state


def targets(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """profilesync against the issue's targets; ratios are peer seconds / profilesync seconds
    (above 1: profilesync faster), except W3's own growth ratio."""
    out = []

    def failed(*rs: Result) -> bool:
        return any(r["errors"] for r in rs)

    for key, rs in results.items():
        if key.startswith("w1-"):
            ps = rs["profilesync"]
            best = min((n for n in rs if n != "profilesync"), key=lambda n: rs[n]["seconds"])
            n = label(int(key[3:]))
            out.append(
                verdict(
                    f"W1 {n}: raw no-PK s / profilesync s",
                    rs["raw no-PK"]["seconds"] / ps["seconds"],
                    1.0,
                    False,
                    failed(ps, rs["raw no-PK"]),
                )
            )
            out.append(
                verdict(
                    f"W1 {n}: dlt s / profilesync s",
                    rs["dlt"]["seconds"] / ps["seconds"],
                    2.0,
                    False,
                    failed(ps, rs["dlt"]),
                )
            )
            out.append(
                (
                    f"W1 {n}: best peer ({best}) s / profilesync s",
                    f"{rs[best]['seconds'] / ps['seconds']:.2f}",
                    "",
                    "",
                )
            )
    if "w2" in results:
        rs = results["w2"]
        ps = rs["profilesync"]
        out.append(
            verdict(
                "W2: dlt s / profilesync s",
                rs["dlt"]["seconds"] / ps["seconds"],
                1.5,
                False,
                failed(ps, rs["dlt"]),
            )
        )
        out.append(
            verdict(
                "W2: raw no-PK s / profilesync s",
                rs["raw no-PK"]["seconds"] / ps["seconds"],
                1.0,
                False,
                failed(ps, rs["raw no-PK"]),
            )
        )
    if "w3-small" in results:
        small, large = results["w3-small"], results["w3-large"]
        for name in NAMES:
            ratio = large[name]["seconds"] / small[name]["seconds"]
            if name == "profilesync":
                out.append(
                    verdict(
                        "W3: profilesync large s / small s",
                        ratio,
                        1.5,
                        True,
                        failed(small[name], large[name]),
                    )
                )
            else:
                out.append((f"W3: {name} large s / small s", f"{ratio:.2f}", "", ""))
    if "diff" in results:
        rs = results["diff"]
        ps = rs["profilesync"]
        out.append(
            verdict(
                "diff: MERGE+PK s / profilesync s",
                rs["raw MERGE+PK"]["seconds"] / ps["seconds"],
                1.0,
                False,
                failed(ps, rs["raw MERGE+PK"]),
            )
        )
    return out


def print_targets(rows: list[tuple[str, str, str, str]]) -> None:
    print(f"\n{'target (issue 10)':<46}{'measured':>10}{'target':>9}  verdict")
    for text, value, target, state in rows:
        print(f"{text:<46}{value:>10}{target:>9}  {state}")


def save(name: str, payload: dict[str, Any]) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path


def plot(points: list[dict[str, Any]], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = [p["rows"] / 1e6 for p in points]
    fig, left = plt.subplots(figsize=(6, 4))
    left.plot(rows, [p["seconds"] for p in points], "o-", color="tab:blue")
    left.set_xlabel("rows (millions)")
    left.set_ylabel("seconds", color="tab:blue")
    right = left.twinx()
    right.plot(rows, [p["peak_mb"] for p in points], "s--", color="tab:red")
    right.set_ylabel("peak RSS (MB)", color="tab:red")
    left.set_title("profilesync Delta first sync (W1)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def scaling(work: Path, sizes: list[int], reps: int) -> None:
    points = []
    for users in sizes:
        r = run_w1(work, users, reps, ("profilesync",))["profilesync"]
        points.append(
            {
                "rows": users,
                "seconds": r["seconds"],
                "runs": r["runs"],
                "peak_mb": r["peak_mb"],
                "ok": not r["errors"],
            }
        )
    base = points[0]["rows"] / points[0]["seconds"]
    print(f"\nprofilesync W1 scaling ({reps} reps, median; load {os.getloadavg()[0]:.2f})")
    print(
        f"{'rows':>8}{'seconds':>10}{'rows/s':>12}{'vs first':>10}{'peak MB':>9}{'B/row':>8}  check"
    )
    for p in points:
        rate = p["rows"] / p["seconds"]
        print(
            f"{label(p['rows']):>8}{p['seconds']:>10.2f}{rate:>12,.0f}{rate / base:>9.2f}x"
            f"{p['peak_mb']:>9.0f}{p['peak_mb'] * 2**20 / p['rows']:>8.0f}  {'ok' if p['ok'] else 'FAIL'}"
        )
    largest = points[-1]
    if len(points) > 1:  # issue 10's targets for the largest size against the smallest
        rate = largest["rows"] / largest["seconds"] / base
        print(
            f"target: {label(largest['rows'])} at >= 0.8x the rows/s of {label(points[0]['rows'])}: "
            f"{rate:.2f}x {'met' if rate >= 0.8 else 'missed'}; peak under 1,500 MB: "
            f"{largest['peak_mb']:,.0f} MB {'met' if largest['peak_mb'] < 1500 else 'missed'}"
        )
    path = save("scaling", {"reps": reps, "load": os.getloadavg(), "points": points})
    png = plot(points, path.with_suffix(".png"))
    print(f"wrote {path}" + (f" and {png}" if png else " (no matplotlib: no plot)"))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", default="1M,5M", help="W1 sizes, comma-separated (up to 50M)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--workloads", default="w1,w2,w3,diff", help="any of w1,w2,w3,diff")
    ap.add_argument("--w2-rows", default="1M")
    ap.add_argument("--w3-sizes", default="100k,5M")
    ap.add_argument("--diff-rows", default="1M")
    ap.add_argument("--scaling", help="profilesync W1 only at these sizes, e.g. 1M,5M,20M")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="profilesync-peers-"))
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    try:
        if args.scaling:
            scaling(work, [size(s) for s in args.scaling.split(",")], args.reps)
            return
        wanted = {w.strip().lower() for w in args.workloads.split(",")}
        results: dict[str, dict[str, Result]] = {}
        table: list[tuple[str, int, int, dict[str, Result]]] = []
        if "w1" in wanted:
            for users in (size(s) for s in args.rows.split(",")):
                if users > 50_000_000:
                    sys.exit("--rows: at most 50M")
                rs = results[f"w1-{users}"] = run_w1(work, users, args.reps)
                table.append(("W1 first sync", users, users, rs))
        if "w2" in wanted:
            users = size(args.w2_rows)
            rs = results["w2"] = run_changes(work, "w2", users, 100_000, 20_000, 30_000, args.reps)
            table.append(("W2 150k changes", users, 150_000, rs))
        if "w3" in wanted:
            small, large = (size(s) for s in args.w3_sizes.split(","))
            results["w3-small"] = run_changes(work, "w3s", small, 10_000, 0, 0, args.reps)
            results["w3-large"] = run_changes(work, "w3l", large, 10_000, 0, 0, args.reps)
            table.append(("W3 10k scattered changes", small, 10_000, results["w3-small"]))
            table.append(("W3 10k scattered changes", large, 10_000, results["w3-large"]))
        if "diff" in wanted:
            users = size(args.diff_rows)
            rs = results["diff"] = run_diff(work, users, args.reps)
            table.append(("diff/resync (1% changed)", users, users, rs))
        print(
            f"\n{args.reps} interleaved reps, medians; load average at end: "
            f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        )
        print_table(table)
        goals = targets(results)
        print_targets(goals)
        failures = [(k, n) for k, rs in results.items() for n, r in rs.items() if r["errors"]]
        if failures:
            print(
                f"\n!!! {len(failures)} figure(s) from stores that did not equal the warehouse: {failures}"
            )
        import dlt

        path = save(
            "peers",
            {
                "reps": args.reps,
                "dlt": dlt.__version__,
                "load": os.getloadavg(),
                "results": results,
                "targets": goals,
            },
        )
        print(f"wrote {path}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
