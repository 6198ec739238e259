"""What the sync benchmarks share: one measurement in a fresh process, the best of three
runs from one starting state (or the median of interleaved runs of several contenders),
and the table they print.

The scripts import this file as a sibling module (``from _harness import ...``): running
``python bench/<script>.py`` puts ``bench/`` first on ``sys.path``, and the spawned
processes that take the measurements start with the same ``sys.path``.
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import resource
import shutil
import statistics
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

#: every figure is the fastest of this many runs
REPEATS = 3
#: modules every measuring process imports before its clock starts; each script adds its
#: own (profilesync's modules only where profilesync runs, so a baseline's peak RSS does
#: not carry them)
PRELOAD = ("duckdb", "pyarrow")
#: what a profilesync sync imports, whatever its source
PROFILESYNC = ("profilesync.store.duckdb", "profilesync.sync.engine")

Result = dict[str, Any]


def peak_rss_mb() -> float:
    """This process's peak RSS in MB: ``VmHWM`` (the high-water mark of this process's own
    memory since it started), else ``ru_maxrss``, which can carry the RSS of the process it
    was forked from."""
    try:
        for row in Path("/proc/self/status").read_text().splitlines():
            if row.startswith("VmHWM:"):
                return int(row.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(
    fn: Callable[..., Result], args: tuple[Any, ...], preload: tuple[str, ...], queue: Any
) -> None:
    try:
        for module in (*PRELOAD, *preload):
            importlib.import_module(module)  # imports are not what is measured
        start = time.perf_counter()
        out = fn(*args)
        out["seconds"] = time.perf_counter() - start
        out["peak_mb"] = peak_rss_mb()
    except BaseException:
        out = {"error": traceback.format_exc()}
    queue.put(out)


def measure(fn: Callable[..., Result], *args: Any, preload: Iterable[str] = ()) -> Result:
    """Run ``fn(*args)`` in a fresh process: the dict it returns plus ``seconds`` (wall
    time after the imports) and ``peak_mb`` (that process's peak RSS).

    ``fn`` must be a module-level function (it is pickled by name); ``preload`` lists the
    modules to import before the clock starts, in addition to :data:`PRELOAD`.
    """
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(fn, args, tuple(preload), queue))
    proc.start()
    out: Result = queue.get()
    proc.join()
    if "error" in out:
        raise RuntimeError(f"{fn.__name__} failed in its measuring process:\n{out['error']}")
    return out


def best_of(
    fn: Callable[..., Result],
    *args: Any,
    home: Path,
    preload: Iterable[str] = (),
    repeats: int = REPEATS,
) -> Result:
    """The fastest of ``repeats`` runs of ``fn(*args, home_copy)``, each on a fresh copy of
    ``home`` (the state before the run; it may not exist yet).

    A sync changes its home, so every run starts from the same state; the last run's home
    becomes ``home`` for the next phase. ``peak_mb`` is the highest of the runs.
    """
    copies = [home.with_name(f"{home.name}-run{i}") for i in range(repeats)]
    runs = []
    for copy in copies:
        shutil.rmtree(copy, ignore_errors=True)
        if home.exists():
            shutil.copytree(home, copy)
        runs.append(measure(fn, *args, copy, preload=preload))
    shutil.rmtree(home, ignore_errors=True)
    copies[-1].rename(home)
    for copy in copies[:-1]:
        shutil.rmtree(copy, ignore_errors=True)
    best = min(runs, key=lambda r: r["seconds"])
    return {**best, "peak_mb": max(r["peak_mb"] for r in runs)}


def header() -> None:
    """The column titles of :func:`line`."""
    print(
        f"{'phase':<22}{'profilesync s':>14}{'rows/s':>13}{'peak MB':>9}"
        f"{'baseline s':>12}{'rows/s':>13}{'peak MB':>9}{'speed-up':>10}"
    )


def line(label: str, ours: Result, theirs: Result, rows: int) -> None:
    """One phase: profilesync's and the baseline's seconds, ``rows``/s and peak MB, and the
    speed-up (baseline seconds / profilesync seconds)."""
    print(
        f"{label:<22}{ours['seconds']:>14.2f}{rows / ours['seconds']:>13,.0f}{ours['peak_mb']:>9.0f}"
        f"{theirs['seconds']:>12.2f}{rows / theirs['seconds']:>13,.0f}{theirs['peak_mb']:>9.0f}"
        f"{theirs['seconds'] / ours['seconds']:>9.2f}x"
    )


def interleaved(
    contenders: dict[str, tuple[Callable[..., Result], tuple[Any, ...], tuple[str, ...]]],
    homes: dict[str, Path],
    reps: int = REPEATS,
    check: Callable[[str, Path], str | None] | None = None,
) -> dict[str, Result]:
    """Median of ``reps`` runs per contender, the contenders taking turns within each rep.

    ``contenders`` maps a name to ``(fn, args, preload)``; each run is
    ``fn(*args, home_copy)`` in a fresh process (:func:`measure`) on a fresh copy of
    ``homes[name]`` (the state before the run; it may not exist yet), which is left as it
    was. ``check(name, home_copy)``, if given, runs after every run and returns an error
    text or None; a failure is printed at once and marks the result (``errors``).
    Returns per name: ``seconds`` (median), ``runs`` (every run's seconds), ``peak_mb`` (the
    highest of the runs), ``errors``, plus the last run's own keys.
    """
    runs: dict[str, list[Result]] = {name: [] for name in contenders}
    errors: dict[str, list[str]] = {name: [] for name in contenders}
    for rep in range(reps):
        for name, (fn, args, preload) in contenders.items():
            home = homes[name]
            copy = home.with_name(f"{home.name}-rep{rep}")
            shutil.rmtree(copy, ignore_errors=True)
            if home.exists():
                shutil.copytree(home, copy)
            try:
                runs[name].append(measure(fn, *args, copy, preload=preload))
                problem = check(name, copy) if check else None
            except RuntimeError as exc:
                runs[name].append({"seconds": float("nan"), "peak_mb": float("nan")})
                problem = str(exc)
            if problem:
                errors[name].append(problem)
                print(f"\n!!! CORRECTNESS FAILURE: {name}, rep {rep + 1}: {problem}\n", flush=True)
            shutil.rmtree(copy, ignore_errors=True)
    out: dict[str, Result] = {}
    for name, rs in runs.items():
        seconds = sorted(r["seconds"] for r in rs)
        out[name] = {
            **rs[-1],
            "seconds": statistics.median(seconds),
            "runs": seconds,
            "peak_mb": max(r["peak_mb"] for r in rs),
            "errors": errors[name],
        }
    return out
