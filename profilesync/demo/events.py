"""Events for ``profilesync demo``: several weeks of page views, feature use and purchases.

Each demo user gets an activity level; events fall on random moments of the last
``weeks`` weeks, more on weekdays. Every event carries the user's ``Title`` and
``Seniority`` as they were *before* the warehouse changed, in ``user_properties``, so
the demo can show a segmentation by the current profile next to the at-event-time one.
Generated with numpy and assembled in DuckDB; no loop per event.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
from rich.console import Console
from rich.table import Table

from profilesync.app import Store
from profilesync.demo.common import cli_command
from profilesync.events import ingest
from profilesync.events import query as q
from profilesync.events.store import create_project, ensure_schema
from profilesync.events.validate import FIELDS

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


def typed(store: Store, plain: pa.Table, seed: int) -> pa.Table:
    """The generated columns in the shape :func:`profilesync.events.validate.validate_sql` yields."""
    con = ensure_schema(store)
    con.register("_demo", plain)
    try:
        fields = {name: "NULL" for name in FIELDS}
        fields.update(
            event_type="event_type",
            user_id="user_id",
            time='"time"',
            event_properties="""CASE event_type
                WHEN 'Page Viewed' THEN json_object('path', path)
                WHEN 'Feature Used' THEN json_object('feature', feature)
                ELSE json_object('product', product, 'amount', amount) END""",
            user_properties="json_object('Title', title_then, 'Seniority', seniority_then)",
            insert_id=f"'demo-{seed}-' || n",
            platform="platform",
        )
        columns = ", ".join(f"{expr} AS {name}" for name, expr in fields.items())
        return con.execute(f'SELECT {columns} FROM _demo ORDER BY "time"').to_arrow_table()
    finally:
        con.unregister("_demo")


def add_demo_events(
    store: Store, console: Console, profiles: dict[str, dict[str, Any]], seed: int = 11
) -> None:
    """Create project ``demo``, store its events, and compare current vs at-event-time titles."""
    project, key = create_project(store, "demo")
    events = typed(store, generate(profiles, seed=seed), seed)
    with ingest.Writer(store, project.id) as writer:
        writer.append(ingest.prepare(store.con, events))
    console.print(
        f"\n[bold]4. events[/]: {writer.total.stored:,} page views, feature uses and purchases "
        f"over 6 weeks for {len(profiles)} users (project [bold]demo[/], API key {key})"
    )
    _compare(store, console)


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
