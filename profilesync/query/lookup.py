"""A user's page: their current profile next to their latest events.

Properties are read back from JSON text; rows kept by versions that did not refuse odd
values at ingestion (NaN, Infinity, nesting deeper than Python parses) are shown as
unreadable instead of failing the whole page.
"""

from __future__ import annotations

import json
import math
from typing import Any

from sqlglot import exp

from profilesync.errors import NotFoundError
from profilesync.model import json_value
from profilesync.query.compiler import fragments
from profilesync.query.relations import EVENTS, Store, physical, relation

UNREADABLE = "(unreadable)"

#: the columns of a user's events, as the page shows them
EVENT_COLUMNS = (
    "project",
    "event_type",
    "time",
    "device_id",
    "event_properties",
    "user_properties",
    "insert_id",
    "platform",
    "country",
)


def latest_events(user: exp.Expr, limit: exp.Expr) -> exp.Select:
    """A user's latest events, newest first (the first column is the project's id)."""
    time = exp.column("time", quoted=True)
    columns = [exp.column("project_id")]
    columns += [exp.column(c, quoted=c == "time") for c in EVENT_COLUMNS[1:]]
    return (
        exp.select(*columns)
        .from_(relation(EVENTS), copy=False)
        .where(exp.column("user_id").eq(user), copy=False)
        .order_by(exp.Ordered(this=time, desc=True), copy=False)
        .limit(limit, copy=False)
    )


def event_summary(user: exp.Expr) -> exp.Select:
    """How many events a user sent, the first and the last."""
    return (
        exp.select(*fragments("count(*)", 'min("time")', 'max("time")'))
        .from_(relation(EVENTS), copy=False)
        .where(exp.column("user_id").eq(user), copy=False)
    )


def user_lookup(store: Store, user_id: str, limit: int = 50) -> dict[str, Any]:
    """A user's current profile (values, sources, last synced) and their latest events."""
    try:
        profile: dict[str, Any] | None = store.get_profile(user_id, detail=True)
    except NotFoundError:
        profile = None
    events, (count, first, last) = read_events(store, user_id, limit)
    if profile is None and not count:
        raise NotFoundError(
            f"no profile and no events for user_id {user_id!r}: check the id "
            "(profiles come from syncs, events from /2/httpapi or `events import`)"
        )
    return {
        "user_id": user_id,
        "profile": profile,
        "event_count": int(count),
        "first_seen": json_value(first),
        "last_seen": json_value(last),
        "events": events,
    }


def read_events(
    store: Store, user_id: str, limit: int
) -> tuple[list[dict[str, Any]], tuple[Any, Any, Any]]:
    """A user's latest events as JSON, and their count, first and last time."""
    tables = {("", EVENTS): store.events_relation}
    user, top = exp.Placeholder(this="1"), exp.Placeholder(this="2")
    rows = store.read(physical(latest_events(user, top), tables), [user_id, limit])
    projects = {p.id: p.name for p in store.events.list_projects()} if rows else {}
    events = [
        _event_json(dict(zip(EVENT_COLUMNS, (projects.get(row[0]), *row[1:]), strict=True)))
        for row in rows
    ]
    summary = store.read(physical(event_summary(user), tables), [user_id])
    return events, (summary[0] if summary else (0, None, None))


def _event_json(row: dict[str, Any]) -> dict[str, Any]:
    for name in ("event_properties", "user_properties"):
        row[name] = _properties(row[name]) if row[name] else {}
    return {k: json_value(v) for k, v in row.items()}


def _properties(text: str) -> Any:
    """Stored properties as JSON values; NaN, Infinity or nesting Python cannot read (kept
    by versions that did not refuse them at ingestion) become null or the start of the raw
    text under ``(unreadable)``, so one odd event never breaks a user's page."""
    try:
        return json.loads(text, parse_constant=lambda _: None, parse_float=_finite)
    except (ValueError, RecursionError):
        return {UNREADABLE: text[:200]}


def _finite(text: str) -> float | None:
    value = float(text)
    return value if math.isfinite(value) else None
