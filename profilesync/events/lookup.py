"""A user's page: their current profile next to their latest events.

Properties are read back from JSON text; rows kept by versions that did not refuse odd
values at ingestion (NaN, Infinity, nesting deeper than Python parses) are shown as
unreadable instead of failing the whole page.
"""

from __future__ import annotations

import json
import math
from typing import Any

import duckdb

from profilesync.errors import NotFoundError
from profilesync.events.store import ensure_schema
from profilesync.store.duckdb import DuckDBStore, json_value

UNREADABLE = "(unreadable)"


def user_lookup(
    store: DuckDBStore, user_id: str, limit: int = 50, con: duckdb.DuckDBPyConnection | None = None
) -> dict[str, Any]:
    """A user's current profile (values, sources, last synced) and their latest events."""
    ensure_schema(store)
    try:
        profile: dict[str, Any] | None = store.get_profile(user_id, detail=True)
    except NotFoundError:
        profile = None
    con = con or store.con
    cur = con.execute(
        'SELECT p.name AS project, e.event_type, e."time", e.device_id, e.event_properties, '
        "e.user_properties, e.insert_id, e.platform, e.country FROM events e "
        "LEFT JOIN projects p ON p.id = e.project_id WHERE e.user_id = ? "
        'ORDER BY e."time" DESC LIMIT ?',
        [user_id, limit],
    )
    names = [d[0] for d in cur.description]
    events = [_event_json(dict(zip(names, row, strict=True))) for row in cur.fetchall()]
    summary = con.execute(
        'SELECT count(*), min("time"), max("time") FROM events WHERE user_id = ?', [user_id]
    ).fetchone()
    count, first, last = summary if summary else (0, None, None)
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
