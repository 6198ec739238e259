"""Events for ``profilesync demo``: several weeks of page views, feature use and purchases.

Each demo user gets an activity level; events fall on random moments of the last
``weeks`` weeks, more on weekdays. Every event carries the user's ``Title`` and
``Seniority`` as they were *before* the warehouse changed, in ``user_properties``, so
the demo can show a segmentation by the current profile next to the at-event-time one,
then a funnel and a retention table by a synced property (:mod:`~profilesync.demo.analyses`).
Generated with numpy and pyarrow, no loop per event, and stored through the same checks as
events sent by a client.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from rich.console import Console
from rich.table import Table

from profilesync.app import Store
from profilesync.app import events as q
from profilesync.app.events import store_events
from profilesync.app.projects import create_project
from profilesync.demo.analyses import print_analyses
from profilesync.demo.common import cli_command

PAGES = ["/", "/pricing", "/docs", "/blog", "/changelog", "/settings"]
FEATURES = ["Dashboard", "Export", "Alerts", "Cohorts", "SQL Editor"]
PRODUCTS = [("Seat", 12.0), ("Add-on", 49.0), ("Annual plan", 480.0)]
KINDS = ["Page Viewed", "Feature Used", "Purchase Completed"]


def generate(
    profiles: dict[str, dict[str, Any]], weeks: int = 6, seed: int = 11, now: datetime | None = None
) -> pa.Table:
    """Plain columns (no JSON yet) of a realistic event stream for these users."""
    rng = np.random.default_rng(seed)
    end = (now or datetime.now(UTC)).replace(tzinfo=None)
    users = sorted(profiles)
    activity = rng.gamma(2.0, 2.5, len(users))  # events per day
    per_user = rng.poisson(activity * weeks * 7)
    user_at = np.repeat(np.arange(len(users)), per_user)
    n = len(user_at)
    seconds = rng.uniform(0, weeks * 7 * 86400, n)
    moments = np.datetime64(end, "ms") - (seconds * 1000).astype("timedelta64[ms]")
    weekend = (
        moments.astype("datetime64[D]").view("int64") - 4
    ) % 7 >= 5  # 1970-01-01 was a Thursday
    keep = ~weekend | (rng.random(n) < 0.4)
    user_at, moments = user_at[keep], moments[keep]
    n = len(user_at)
    kind = rng.choice(len(KINDS), n, p=[0.62, 0.33, 0.05])
    product = rng.integers(0, len(PRODUCTS), n)
    titles = [profiles[u]["properties"].get("Title") for u in users]
    seniority = [profiles[u]["properties"].get("Seniority") for u in users]
    return pa.table(
        {
            "event_type": pa.array(np.array(KINDS)[kind]),
            "user_id": pa.array(np.array(users)[user_at]),
            "time": pa.array(moments, pa.timestamp("ms")),
            "path": pa.array(np.array(PAGES)[rng.integers(0, len(PAGES), n)]),
            "feature": pa.array(np.array(FEATURES)[rng.integers(0, len(FEATURES), n)]),
            "product": pa.array(np.array([p for p, _ in PRODUCTS])[product]),
            "amount": pa.array(np.array([a for _, a in PRODUCTS])[product] * rng.integers(1, 4, n)),
            "title_then": pa.array(np.array(titles, dtype=object)[user_at], pa.string()),
            "seniority_then": pa.array(np.array(seniority, dtype=object)[user_at], pa.string()),
            "platform": pa.array(
                np.array(["Web", "iOS", "Android"])[rng.choice(3, n, p=[0.6, 0.25, 0.15])]
            ),
            "n": pa.array(np.arange(n)),
        }
    )


def as_events(plain: pa.Table, seed: int) -> pa.Table:
    """The generated columns as HTTP V2 events (properties as JSON text), as a client sends
    them: ``time`` in ms since the epoch, an ``insert_id`` per event."""
    kind = plain.column("event_type")
    event_properties = pc.case_when(
        pc.make_struct(pc.equal(kind, "Page Viewed"), pc.equal(kind, "Feature Used")),
        _object(path=plain.column("path")),
        _object(feature=plain.column("feature")),
        _object(product=plain.column("product"), amount=plain.column("amount")),
    )
    return pa.table(
        {
            "event_type": kind,
            "user_id": plain.column("user_id"),
            "time": pc.cast(plain.column("time"), pa.int64()),
            "event_properties": event_properties,
            "user_properties": _object(
                Title=plain.column("title_then"), Seniority=plain.column("seniority_then")
            ),
            "insert_id": pc.binary_join_element_wise(
                f"demo-{seed}-", pc.cast(plain.column("n"), pa.string()), ""
            ),
            "platform": plain.column("platform"),
        }
    )


def _object(**columns: pa.ChunkedArray) -> pa.ChunkedArray:
    """Per row, the JSON object text of ``columns``: each distinct value is encoded once."""
    parts: list[Any] = ["{"]
    for i, (name, column) in enumerate(columns.items()):
        distinct = pc.unique(column)
        encoded = pa.array([json.dumps(v) for v in distinct.to_pylist()], pa.string())
        parts += [("" if i == 0 else ", ") + json.dumps(name) + ": "]
        parts.append(encoded.take(pc.index_in(column, value_set=distinct)))
    parts.append("}")
    return pc.binary_join_element_wise(*parts, "")


def add_demo_events(
    store: Store, console: Console, profiles: dict[str, dict[str, Any]], seed: int = 11
) -> None:
    """Create project ``demo``, store its events, compare current vs at-event-time titles,
    and print a funnel and a retention table."""
    project, key = create_project(store, "demo")
    events = as_events(generate(profiles, seed=seed), seed)
    done = store_events(store, project.name, events)
    console.print(
        f"\n[bold]4. events[/]: {done.stored:,} page views, feature uses and purchases "
        f"over 6 weeks for {len(profiles)} users (project [bold]demo[/], API key {key})"
    )
    _compare(store, console)
    print_analyses(store, console)


def _compare(store: Store, console: Console) -> None:
    """Purchases by Title now (current profile) and then (sent with each event)."""
    start = (datetime.now(UTC) - timedelta(weeks=6)).date()
    table = Table(
        "Title",
        "purchases by current Title",
        "by Title at event time",
        title_justify="left",
        title="Purchase Completed, last 6 weeks: profile now vs at event time",
    )
    answers = []
    for kind in ("profile", "user"):
        query = q.SegmentationQuery(
            events=["Purchase Completed"],
            interval="week",
            start=start,
            group_by=q.PropertyRef.parse(f"{kind}:Title"),
            limit=20,
        )
        answers.append({s["label"]: s["total"] for s in q.segmentation(store, query)["series"]})
    for label in sorted(set(answers[0]) | set(answers[1])):
        table.add_row(label, str(answers[0].get(label, 0)), str(answers[1].get(label, 0)))
    console.print(table)
    console.print(
        f"Try: [bold]{cli_command()} --home {store.home} query segmentation -e 'Purchase Completed' "
        "--interval week -g profile:Title[/]"
    )
