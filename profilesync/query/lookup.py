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
from profilesync.query.relations import (
    EVENTS,
    PROJECTS,
    QueryStore,
    Reader,
    physical,
    relation,
    table_names,
)

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


def latest_events(user: exp.Expression, limit: exp.Expression) -> exp.Select:
    """A user's latest events, newest first, with their project's name."""
    time = exp.column("time", "e", quoted=True)
    columns = [exp.column("name", "p").as_("project")]
    columns += [exp.column(c, "e", quoted=c == "time") for c in EVENT_COLUMNS[1:]]
    return (
        exp.select(*columns)
        .from_(relation(EVENTS, "e"))
        .join(relation(PROJECTS, "p"), on="p.id = e.project_id", join_type="left")
        .where(exp.column("user_id", "e").eq(user))
        .order_by(exp.Ordered(this=time.copy(), desc=True))
        .limit(limit)
    )


def event_summary(user: exp.Expression) -> exp.Select:
    """How many events a user sent, the first and the last."""
    return (
        exp.select("count(*)", 'min("time")', 'max("time")')
        .from_(relation(EVENTS))
        .where(exp.column("user_id").eq(user))
    )


def user_lookup(store: QueryStore, user_id: str, limit: int = 50) -> dict[str, Any]:
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
    reader: Reader, user_id: str, limit: int
) -> tuple[list[dict[str, Any]], tuple[Any, Any, Any]]:
    """A user's latest events as JSON, and their count, first and last time."""
    tables = table_names([])
    user, top = exp.Placeholder(this="1"), exp.Placeholder(this="2")
    rows = reader.read(physical(latest_events(user, top), tables), [user_id, limit])
    events = [_event_json(dict(zip(EVENT_COLUMNS, row, strict=True))) for row in rows]
    summary = reader.read(physical(event_summary(user), tables), [user_id])
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
