"""Funnels and retention on both stores, against hand-written SQL on the same engine.

    python bench/analyses.py [--events 10M] [--profiles 1M] [--repeat 5]

Generates ``--events`` events over 30 days in sessions (each opens with a page view; later
events are page views, feature uses, sign-ins, exports, invites and purchases, so a funnel
drops off at every step; a few users do most of it; one session in twenty sends all its
events at one millisecond and one in ten sends its second and third together; one user in
eleven has no profile), written once by DuckDB into a Parquet file and loaded into both
stores, and ``--profiles`` profiles (Plan, Country) synced from a Delta table into each
store by profilesync's own sync. Then, each contender in a fresh process and with warm
caches, the median of ``--repeat`` runs (after one warm-up) of:

- ``funnel``: Page Viewed -> Feature Used -> Purchase Completed within 7 days, users and
  median time to convert per step, overall and by the users' current profile Plan;
- ``retention on`` / ``retention on-or-after``: users by the day of their first Page
  Viewed, and who did Feature Used on day 0..14 after it (or on it or any later day), overall
  and by Plan;

through ``profilesync.app.analyses`` on chdb and on the DuckDB store, against the
hand-written SQL an analyst would write for the same definitions over the same tables
(``windowFunnel`` and ``retention`` are not it: ``windowFunnel`` lets any page view start
the funnel, not the user's first in the range, and has no time to convert; ``retention``
takes fixed dates, not each user's own start). Every answer must equal the hand-written
one. A benchmark, not a test. Results are written as JSON under ``bench/out/``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from _harness import Result, measure
from _peers_contenders import OUT, size
from clickhouse import PRELOAD, build_home, profiles_table
from segmentation import timed

BACKENDS = ("duckdb", "chdb")
DAYS = 30
FIRST = date(2024, 6, 1)
LAST = FIRST + timedelta(days=DAYS - 1)
STEPS = ("Page Viewed", "Feature Used", "Purchase Completed")
#: later events of a session by share (percent); a session opens with a page view
MIX = (
    ("Page Viewed", 45),
    ("Feature Used", 25),
    ("Signed In", 10),
    ("Exported", 8),
    ("Invite Sent", 6),
    ("Purchase Completed", 6),
)
SESSION = 5  # events per session
BUCKETS = 14
ANALYSES = ("funnel", "retention on", "retention on-or-after")
#: the answers as compared: group (``*`` overall, None for users without a profile) -> ...
Answer = dict[Any, Any]

# -- data --------------------------------------------------------------------------------


def events_file(path: Path, events: int, users: int) -> None:
    """``events`` events in sessions of :data:`SESSION` over :data:`DAYS` days, written in
    time order to Parquet by DuckDB (no Python per row). Session ``s`` belongs to user
    ``floor(users * x**2)`` (``x`` uniform: a few heavy users, many light ones), scattered by
    a permutation of the ids so that ids past the profiles' (no profile) are no heavier."""
    import duckdb

    kinds, bounds, total = [], [], 0
    for kind, share in MIX:
        total += share
        kinds.append(f"'{kind}'")
        bounds.append(f"WHEN r < {total} THEN '{kind}'")
    span_ms = DAYS * 86_400_000
    start = datetime.combine(FIRST, datetime.min.time())
    with duckdb.connect() as con:
        con.execute("SET preserve_insertion_order = false")
        con.execute(
            f"""COPY (
            WITH e AS (
                SELECT i, i // {SESSION} AS s, i % {SESSION} AS j, hash(i, 5) % 100 AS r
                FROM range({events}) t(i)
            ), g AS (
                SELECT *,
                    CAST(floor({users} * pow((hash(s, 2) % 1000003) / 1000003.0, 2)) AS BIGINT) AS u,
                    (hash(s, 3) % {span_ms})::BIGINT AS t0,
                    CASE WHEN hash(s, 4) % 20 = 0 THEN 0 ELSE (hash(s, 4) % 600000)::BIGINT END AS gap,
                    hash(s, 6) % 10 = 0 AS together
                FROM e
            )
            SELECT CASE WHEN j = 0 THEN 'Page Viewed' ELSE CASE {" ".join(bounds)} END END
                    AS event_type,
                'user-' || ((u * 7919 + 13) % {users}) AS user_id,
                ?::TIMESTAMP + to_milliseconds(
                    (t0 + j * gap - CASE WHEN j = 2 AND together THEN gap ELSE 0 END)::BIGINT
                ) AS "time",
                CASE WHEN r >= {total - MIX[-1][1]} AND j > 0
                    THEN json_object('amount', hash(i, 7) % 200)::VARCHAR END AS event_properties,
                'b-' || i AS insert_id, 'Web' AS platform
            FROM g ORDER BY "time"
            ) TO '{path}' (FORMAT parquet, ROW_GROUP_SIZE 1000000)""",
            [start],
        )


# -- the questions -------------------------------------------------------------------------

RANGE = {"start": FIRST.isoformat(), "end": LAST.isoformat()}
GROUP = {"kind": "profile", "name": "Plan"}


def questions() -> dict[str, Any]:
    from profilesync.app import analyses as app

    return {
        "funnel": app.FunnelQuery(steps=list(STEPS), window="7d", group_by=GROUP, **RANGE),
        **{
            f"retention {mode.replace('_', '-')}": app.RetentionQuery(
                start_event=STEPS[0],
                return_event=STEPS[1],
                interval="day",
                buckets=BUCKETS,
                mode=mode,
                group_by=GROUP,
                **RANGE,
            )
            for mode in ("on", "on_or_after")
        },
    }


def _secs(micros: Any) -> float | None:
    return None if micros is None else round(float(micros) / 1_000_000, 6)


def funnel_answer(answer: dict[str, Any]) -> Answer:
    """Per group: users and median seconds to convert, per step."""

    def steps(rows: list[dict[str, Any]]) -> list[tuple[int, float | None]]:
        return [
            (s["users"], None if (m := s["median_seconds_to_convert"]) is None else round(m, 6))
            for s in rows
        ]

    assert not any(g["other"] for g in answer["groups"]), "more plans than the limit"
    return {"*": steps(answer["steps"])} | {g["group"]: steps(g["steps"]) for g in answer["groups"]}


def retention_answer(answer: dict[str, Any]) -> Answer:
    """Per group and cohort day with users: users and returned per offset."""

    def cohorts(rows: list[dict[str, Any]]) -> dict[str, tuple[int, tuple[int, ...]]]:
        return {c["start"]: (c["users"], tuple(c["returned"])) for c in rows if c["users"]}

    assert not any(g["other"] for g in answer["groups"]), "more plans than the limit"
    return {"*": cohorts(answer["cohorts"])} | {
        g["group"]: cohorts(g["cohorts"]) for g in answer["groups"]
    }


def ask_profilesync(backend: str, home: Path, repeat: int) -> Result:
    """Each analysis through ``profilesync.app.analyses``: median seconds and the answer."""
    from profilesync.app import analyses as app
    from profilesync.store import open_store

    out: Result = {}
    with open_store(home) as store:
        assert store.dialect == ("clickhouse" if backend == "chdb" else "duckdb")
        for name, question in questions().items():
            if name == "funnel":
                seconds, answer = timed(partial(app.funnel, store, question), repeat)
                out[name] = {"seconds": seconds, "answer": funnel_answer(answer)}
            else:
                seconds, answer = timed(partial(app.retention, store, question), repeat)
                out[name] = {"seconds": seconds, "answer": retention_answer(answer)}
    return out


# -- hand-written SQL ------------------------------------------------------------------------

#: DuckDB: the users' first page view in the range, then each later step after the previous
#: one and within 7 days of the first (different event types, so an event at the same
#: moment as the previous step counts)
DUCKDB_FUNNEL = """
WITH s1 AS (
    SELECT user_id, min("time") AS t1 FROM events
    WHERE event_type = 'Page Viewed' AND "time" >= $start AND "time" < $end
    GROUP BY user_id
), s2 AS (
    SELECT s1.user_id, s1.t1, min(e."time") AS t2
    FROM s1 JOIN events e ON e.user_id = s1.user_id
    WHERE e.event_type = 'Feature Used' AND e."time" >= s1.t1 AND e."time" <= s1.t1 + INTERVAL 7 DAY
    GROUP BY s1.user_id, s1.t1
), s3 AS (
    SELECT s2.user_id, min(e."time") AS t3
    FROM s2 JOIN events e ON e.user_id = s2.user_id
    WHERE e.event_type = 'Purchase Completed' AND e."time" >= s2.t2 AND e."time" <= s2.t1 + INTERVAL 7 DAY
    GROUP BY s2.user_id
)
SELECT grouping(p."Plan") = 1, p."Plan", count(*), count(t2), count(t3),
    median(epoch_us(t2) - epoch_us(s1.t1)), median(epoch_us(t3) - epoch_us(s1.t1))
FROM s1 LEFT JOIN s2 USING (user_id) LEFT JOIN s3 USING (user_id)
    LEFT JOIN {profiles} p ON p.user_id = s1.user_id
GROUP BY GROUPING SETS ((), (p."Plan"))
"""

#: ClickHouse: the same, the small side of each join on the right, NULLs for no match
CLICKHOUSE_FUNNEL = """
WITH s1 AS (
    SELECT user_id, min(time) AS t1 FROM events
    WHERE event_type = 'Page Viewed' AND time >= toDateTime64({start:String}, 6)
      AND time < toDateTime64({end:String}, 6)
    GROUP BY user_id
), s2 AS (
    SELECT s1.user_id AS user_id, s1.t1 AS t1, min(e.time) AS t2
    FROM events AS e INNER JOIN s1 ON e.user_id = s1.user_id
    WHERE e.event_type = 'Feature Used' AND e.time >= toDateTime64({start:String}, 6)
      AND e.time >= s1.t1 AND e.time <= s1.t1 + INTERVAL 7 DAY
    GROUP BY s1.user_id, s1.t1
), s3 AS (
    SELECT s2.user_id AS user_id, min(e.time) AS t3
    FROM events AS e INNER JOIN s2 ON e.user_id = s2.user_id
    WHERE e.event_type = 'Purchase Completed' AND e.time >= toDateTime64({start:String}, 6)
      AND e.time >= s2.t2 AND e.time <= s2.t1 + INTERVAL 7 DAY
    GROUP BY s2.user_id
)
SELECT grouping(p.Plan) = 1, p.Plan, count(), count(t2), count(t3),
    quantileExactInclusive(0.5)(toUnixTimestamp64Micro(t2) - toUnixTimestamp64Micro(s1.t1)),
    quantileExactInclusive(0.5)(toUnixTimestamp64Micro(t3) - toUnixTimestamp64Micro(s1.t1))
FROM s1 LEFT JOIN s2 ON s2.user_id = s1.user_id LEFT JOIN s3 ON s3.user_id = s1.user_id
    LEFT JOIN (SELECT user_id, Plan FROM {profiles} FINAL WHERE _is_deleted = 0) AS p
        ON p.user_id = s1.user_id
GROUP BY GROUPING SETS ((), (p.Plan))
SETTINGS join_use_nulls = 1, group_by_use_nulls = 1
"""

#: DuckDB: each user's first page view in the range (its day is the cohort), the days
#: after it with a feature use (``on``), or the last such day (``on-or-after``: it counts
#: for every day up to it); rows (overall?, plan, cohort, offset or -1 for users, users)
DUCKDB_RETENTION = """
WITH s AS (
    SELECT user_id, min("time") AS t1 FROM events
    WHERE event_type = 'Page Viewed' AND "time" >= $start AND "time" < $end
    GROUP BY user_id
), back AS (
    SELECT s.user_id, {offset} AS k
    FROM s JOIN events e ON e.user_id = s.user_id
    WHERE e.event_type = 'Feature Used' AND e."time" >= s.t1 {until}
    GROUP BY {keys}
), counted AS (
    SELECT s.user_id, s.t1::DATE AS cohort, -1 AS k FROM s
    UNION ALL
    SELECT s.user_id, s.t1::DATE, {counted} FROM s JOIN back b ON b.user_id = s.user_id {per}
)
SELECT grouping(p."Plan") = 1, p."Plan", cohort, k, count(*)
FROM counted c LEFT JOIN {profiles} p ON p.user_id = c.user_id
GROUP BY GROUPING SETS ((cohort, k), (p."Plan", cohort, k))
"""

DUCKDB_MODES = {
    "retention on": {
        "offset": "datediff('day', s.t1::DATE, e.\"time\"::DATE)",
        "until": f'AND e."time" < $end::TIMESTAMP + INTERVAL {BUCKETS} DAY',
        "keys": "s.user_id, k HAVING k <= 14",
        "counted": "b.k",
        "per": "",
    },
    "retention on-or-after": {
        "offset": "least(max(datediff('day', s.t1::DATE, e.\"time\"::DATE)), 14)",
        "until": "",
        "keys": "s.user_id",
        "counted": "o.k",
        "per": "JOIN range(0, 15) o(k) ON o.k <= b.k",
    },
}

CLICKHOUSE_RETENTION = """
WITH s AS (
    SELECT user_id, min(time) AS t1 FROM events
    WHERE event_type = 'Page Viewed' AND time >= toDateTime64({{start:String}}, 6)
      AND time < toDateTime64({{end:String}}, 6)
    GROUP BY user_id
), back AS (
    SELECT s.user_id AS user_id, {offset} AS k
    FROM events AS e INNER JOIN s ON e.user_id = s.user_id
    WHERE e.event_type = 'Feature Used' AND e.time >= toDateTime64({{start:String}}, 6)
      AND e.time >= s.t1 {until}
    GROUP BY {keys}
), counted AS (
    SELECT user_id, toDate(t1) AS cohort, -1 AS k FROM s
    UNION ALL
    SELECT s.user_id AS user_id, toDate(s.t1) AS cohort, {counted} AS k
    FROM back AS b INNER JOIN s ON b.user_id = s.user_id {per}
)
SELECT grouping(p.Plan) = 1, p.Plan, cohort, k, count()
FROM counted AS c
    LEFT JOIN (SELECT user_id, Plan FROM {profiles} FINAL WHERE _is_deleted = 0) AS p
        ON p.user_id = c.user_id
GROUP BY GROUPING SETS ((cohort, k), (p.Plan, cohort, k))
SETTINGS join_use_nulls = 1, group_by_use_nulls = 1
"""

CLICKHOUSE_MODES = {
    "retention on": {
        "offset": "dateDiff('day', toDate(s.t1), toDate(e.time))",
        "until": f"AND e.time < toDateTime64({{end:String}}, 6) + INTERVAL {BUCKETS} DAY",
        "keys": "s.user_id, k HAVING k <= 14",
        "counted": "b.k",
        "per": "",
    },
    "retention on-or-after": {
        "offset": "least(max(dateDiff('day', toDate(s.t1), toDate(e.time))), 14)",
        "until": "",
        "keys": "s.user_id",
        "counted": "o.k",
        "per": "INNER JOIN (SELECT toInt64(number) AS k FROM numbers(15)) AS o ON o.k <= b.k",
    },
}


def _plan(overall: Any, plan: Any) -> Any:
    return "*" if overall else plan


def hand_funnel(rows: list[tuple[Any, ...]]) -> Answer:
    return {
        _plan(overall, plan): [(n1, None), (n2, _secs(m2)), (n3, _secs(m3))]
        for overall, plan, n1, n2, n3, m2, m3 in rows
    }


def hand_retention(rows: list[tuple[Any, ...]]) -> Answer:
    counts: dict[Any, dict[str, dict[int, int]]] = {}
    for overall, plan, cohort, k, n in rows:
        day = cohort if isinstance(cohort, str) else cohort.isoformat()
        counts.setdefault(_plan(overall, plan), {}).setdefault(day, {})[int(k)] = int(n)
    return {
        group: {
            day: (c[-1], tuple(c.get(k, 0) for k in range(BUCKETS + 1)))
            for day, c in sorted(cohorts.items())
        }
        for group, cohorts in counts.items()
    }


def _bounds() -> dict[str, datetime]:
    """The range of the first step: ``[start, end)``."""
    start = datetime.combine(FIRST, datetime.min.time())
    return {"start": start, "end": start + timedelta(days=DAYS)}


def ask_by_hand(backend: str, home: Path, repeat: int) -> Result:
    """Each analysis in hand-written SQL over the store's own tables."""
    from profilesync.store import open_store

    out: Result = {}
    with open_store(home) as store:
        profiles = store.get_source("users").profile_table
        for name in ANALYSES:
            if backend == "chdb":
                sql = (
                    CLICKHOUSE_FUNNEL.replace("{profiles}", profiles)
                    if name == "funnel"
                    else CLICKHOUSE_RETENTION.format(profiles=profiles, **CLICKHOUSE_MODES[name])
                )

                def run(sql: str = sql) -> list[tuple[Any, ...]]:
                    bounds = {k: str(v) for k, v in _bounds().items()}
                    table = store.driver.query_arrow(sql, bounds)
                    return list(zip(*(c.to_pylist() for c in table.columns), strict=True))
            else:
                sql = (
                    DUCKDB_FUNNEL.replace("{profiles}", profiles)
                    if name == "funnel"
                    else DUCKDB_RETENTION.format(profiles=profiles, **DUCKDB_MODES[name])
                )

                def run(sql: str = sql) -> list[tuple[Any, ...]]:
                    return store.con.execute(sql, _bounds()).fetchall()

            seconds, rows = timed(run, repeat)
            shaped = hand_funnel(rows) if name == "funnel" else hand_retention(rows)
            out[name] = {"seconds": seconds, "answer": shaped}
    return out


# -- main -----------------------------------------------------------------------------------

CONTENDERS = (
    ("profilesync", ask_profilesync),
    ("hand-written", ask_by_hand),
)


def build(work: Path, events: int, profiles: int) -> Result:
    lake, data = work / "lake", work / "events.parquet"
    started = time.perf_counter()
    profiles_table(lake / "prod" / "users", profiles)
    events_file(data, events, int(profiles * 1.1))  # one user in eleven has no profile
    print(
        f"generated {profiles:,} profiles and {events:,} events in "
        f"{time.perf_counter() - started:.1f} s",
        flush=True,
    )
    built: Result = {}
    for backend in BACKENDS:
        built[backend] = measure(build_home, backend, work / backend, lake, data, preload=PRELOAD)
        print(
            f"  {backend}: synced {profiles:,} profiles in {built[backend]['sync_seconds']:.1f} s,"
            f" loaded the events in {built[backend]['load_seconds']:.1f} s",
            flush=True,
        )
    data.unlink()
    return built


def compare(asked: dict[tuple[str, str], Result]) -> list[str]:
    """The problems: answers that differ from the hand-written SQL on the same engine."""
    problems = []
    for backend in BACKENDS:
        for name in ANALYSES:
            ours = asked[("profilesync", backend)][name]["answer"]
            theirs = asked[("hand-written", backend)][name]["answer"]
            if ours != theirs:
                diff = sorted(
                    str(g) for g in set(ours) | set(theirs) if ours.get(g) != theirs.get(g)
                )
                problems.append(f"{name} on {backend}: the answers differ (groups {diff})")
    for name in ANALYSES:  # and both engines agree
        if (
            asked[("hand-written", "duckdb")][name]["answer"]
            != asked[("hand-written", "chdb")][name]["answer"]
        ):
            problems.append(f"{name}: DuckDB and ClickHouse answers differ")
    return problems


def report(asked: dict[tuple[str, str], Result], events: int, profiles: int, repeat: int) -> None:
    print(
        f"\nfunnel and retention over {events:,} events x {profiles:,} profiles "
        f"({DAYS} days, by profile Plan), median of {repeat} after a warm-up:"
    )
    print(f"{'analysis':<24}{'engine':<8}{'profilesync s':>14}{'hand-written s':>16}{'ratio':>7}")
    for name in ANALYSES:
        for backend in BACKENDS:
            ours = asked[("profilesync", backend)][name]["seconds"]
            theirs = asked[("hand-written", backend)][name]["seconds"]
            print(f"{name:<24}{backend:<8}{ours:>14.3f}{theirs:>16.3f}{ours / theirs:>7.2f}")
    for (who, backend), r in asked.items():
        print(f"  {who} on {backend}: peak {r['peak_mb']:.0f} MB")
    funnel = asked[("hand-written", "duckdb")]["funnel"]["answer"]["*"]
    print("  funnel overall (users, median s):", funnel)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=size, default=10_000_000)
    parser.add_argument("--profiles", type=size, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per analysis")
    parser.add_argument("--keep", type=Path, help="build the homes here and keep them")
    args = parser.parse_args()
    one, five, _ = os.getloadavg()
    print(f"load average before: {one:.2f} {five:.2f} on {os.cpu_count()} cores", flush=True)
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-analyses-"))
    saved: Result = {"args": {k: str(v) for k, v in vars(args).items()}}
    try:
        if not (work / "chdb").exists():
            saved["built"] = build(work, args.events, args.profiles)
        asked = {
            (who, backend): measure(fn, backend, work / backend, args.repeat, preload=PRELOAD)
            for backend in BACKENDS
            for who, fn in CONTENDERS
        }
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report(asked, args.events, args.profiles, args.repeat)
    one, five, _ = os.getloadavg()
    print(f"load average after: {one:.2f} {five:.2f}")
    saved["seconds"] = {
        f"{who} {backend} {name}": r[name]["seconds"]
        for (who, backend), r in asked.items()
        for name in ANALYSES
    }
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"analyses-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(saved, indent=2, default=str))
    print(f"results: {path}")
    problems = compare(asked)
    if problems:
        print("\n".join(["", "!!! ANSWERS DIFFER:", *problems]), file=sys.stderr)
        raise SystemExit(1)
    print("every answer equals the hand-written SQL's")


if __name__ == "__main__":
    main()
