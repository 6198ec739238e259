"""The sync frequencies the UI offers, each disabled when the table's change retention
cannot cover it, and Test mapping judged against the frequency that will be chosen.

"Add a source" and a source's page offer the same choices with the same reasons.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from typing import Any, Protocol

from profilesync.app import Store
from profilesync.app.sources import retention_problems
from profilesync.errors import ConfigurationError, ProfilesyncError
from profilesync.model import (
    DEFAULT_FREQUENCY_SECONDS,
    Connection,
    Source,
    format_frequency,
    parse_frequency,
)
from profilesync.server import views


class DraftLike(Protocol):
    """What these need of the "Add a source" draft."""

    frequency: str

    def spec(self, frequency_seconds: int = ...) -> views.SourceSpec: ...


def offered(store: Store, source: Source, current: int | None = None) -> list[dict[str, Any]]:
    """The frequencies (shortest first; ``current`` added when it is not a usual one), each
    ``{"value", "seconds", "label", "disabled", "why_not"}``; ``current`` stays enabled so
    that the form can show it, with its reason."""
    seconds = _frequencies(current)
    problems = views.frequency_problems(store, source, list(seconds.values()))
    return _choices(seconds, problems, current)


#: how long the source page reuses a judged retention (its reload every 1.2 s during a sync
#: would otherwise reopen the warehouse each time); a changed mapping or connection is
#: judged afresh at once, and changing the frequency always checks the warehouse again
JUDGED_SECONDS = 180.0
_judged: dict[tuple[Any, ...], tuple[float, dict[int, list[Any]] | None]] = {}
_judged_lock = threading.Lock()


def offered_judged(
    connection: Connection, source: Source, current: int | None = None
) -> list[dict[str, Any]]:
    """:func:`offered` for a saved source whose connection was read already: no store is
    needed (call it without holding the store lock), and the judgement is kept
    :data:`JUDGED_SECONDS` per source, mapping and connection. A warehouse that cannot be
    reached disables nothing (and is not asked again meanwhile either)."""
    seconds = _frequencies(current)
    key = _fingerprint(connection, source, seconds)
    now = time.monotonic()
    with _judged_lock:
        for stale in [k for k, (at, _) in _judged.items() if now - at > JUDGED_SECONDS]:
            del _judged[stale]
        found = _judged.get(key)
    if found is None:
        try:
            problems: dict[int, list[Any]] | None = retention_problems(
                connection, source, sorted(seconds.values())
            )
        except ProfilesyncError:
            problems = None
        found = (now, problems)
        with _judged_lock:
            _judged[key] = found
    return _choices(seconds, found[1] or {}, current)


def _fingerprint(
    connection: Connection, source: Source, seconds: dict[str, int]
) -> tuple[Any, ...]:
    config = json.dumps(connection.config, sort_keys=True, default=str)
    digest = hashlib.sha256(
        f"{connection.kind}\0{config}\0{source.mapping!r}\0{source.strategy}".encode()
    ).hexdigest()
    return (source.id, source.name, digest, tuple(sorted(seconds.values())))


def unchecked(current: int | None = None) -> list[dict[str, Any]]:
    """The same choices, none disabled (no retention to judge, or none could be read)."""
    return _choices(_frequencies(current), {}, current)


def _frequencies(current: int | None) -> dict[str, int]:
    seconds = {f: parse_frequency(f) for f in views.FREQUENCIES}
    if current is not None and current not in seconds.values():
        seconds[format_frequency(current)] = current
    return seconds


def _choices(
    seconds: dict[str, int], problems: dict[int, list[Any]], current: int | None
) -> list[dict[str, Any]]:
    choices = [
        {
            "value": f,
            "seconds": s,
            "label": label(f),
            "disabled": s in problems and s != current,
            "why_not": "; ".join(c.message for c in problems.get(s, [])),
        }
        for f, s in seconds.items()
    ]
    return sorted(choices, key=lambda c: c["seconds"])


def frequency_choices(store: Store, draft: DraftLike) -> list[dict[str, Any]]:
    """The frequencies offered for the draft's table."""
    source, warehouse = views.resolve(store, draft.spec())
    warehouse.close()
    return offered(store, source)


def test_report(store: Store, draft: DraftLike) -> dict[str, Any]:
    """Test mapping, with the retention judged against the frequency the user will choose.

    The frequency is chosen on the next step (12 hours unless changed). When the table's
    change retention cannot cover it but covers a shorter one, the test judges the longest
    covered frequency, the draft moves to it, and a warning says so: a table keeping
    changes 6 hours can be added to sync every 6 hours, rather than failing here.
    """
    try:
        choices = frequency_choices(store, draft)
    except ProfilesyncError:  # Test mapping itself says what is wrong
        choices = []
    wanted = next((c for c in choices if c["value"] == draft.frequency), None)
    allowed = [c for c in choices if not c["disabled"]]
    if wanted is None or not wanted["disabled"] or not allowed:
        return views.test_spec(store, draft.spec(_seconds(draft.frequency)))
    longest = allowed[-1]  # shortest first: the longest one the retention covers
    draft.frequency = longest["value"]
    report = views.test_spec(store, draft.spec(longest["seconds"]))
    note = {
        "name": "frequency",
        "level": "warn",
        "message": f"{wanted['label']} is too long for this table ({wanted['why_not']}): "
        f"choose {longest['label']} or more often on the next step.",
        "fix_sql": None,
    }
    return {**report, "checks": [*report["checks"], note]}


def _seconds(frequency: str) -> int:
    try:
        return parse_frequency(frequency)
    except ConfigurationError:
        return DEFAULT_FREQUENCY_SECONDS


def label(frequency: str) -> str:
    """``"6h"`` -> ``"every 6 hours"``, ``"1d"`` -> ``"every day"``."""
    number, unit = int(frequency[:-1]), frequency[-1]
    word = {"m": "minute", "h": "hour", "d": "day"}[unit]
    return f"every {number} {word}{'s' if number > 1 else ''}" if number > 1 else f"every {word}"
