"""Amplitude's 429: a device or user sending events too fast has its request refused.

Each ingestion API has its rules, each "at most ``events`` events per device (and per user)
in any window of ``seconds`` seconds", counted per API key as Amplitude counts them:

- ``/2/httpapi``: 900 events in 30 s, Amplitude's 30 events/s averaged over 30 s;
- ``/batch``: 30,000 events in 30 s (Amplitude's 1,000 events/s per device or user) and
  500,000 events in 24 hours (its daily limit per device or user);
- ``/identify`` is not throttled (Amplitude limits how often user properties change, not
  the requests; see the README).

A request that would take any device or user of it past a rule is refused whole: a 429
``{"code": 429, "error": "Too many requests for some devices and users", "eps_threshold",
"throttled_devices": {device_id: events/s}, "throttled_users": {user_id: events/s},
"throttled_events": [indexes]}`` (the rates over the rule's window, this request
included), nothing of it stored; the client retries later. Only admitted events count, so a
client that backs off is let in again once its window has room.

The window slides in steps (a second for the 30 s rules, an hour for the daily one): the
events of a step leave the count together when the step falls out of the window. Events are
counted per device and user by an Arrow group-by over each request; the counts live in a
dictionary per rule, touched once per distinct device or user of a request (never per event).
They are kept in the server process only: a restart forgets them and lets every device in.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from profilesync.errors import ConfigurationError

__all__ = ["RULES", "Admitted", "Rule", "Throttle", "ThrottledError"]

#: what the 429 says, as Amplitude words it (clients may match it)
MESSAGE = "Too many requests for some devices and users"


@dataclass(frozen=True)
class Rule:
    """At most ``events`` events per device, and per user, in any ``seconds`` seconds; the
    window moves ``step`` seconds at a time."""

    events: int
    seconds: int
    step: int = 1

    @property
    def eps(self) -> float:
        """The limit as Amplitude states it: events per second over the window."""
        return self.events / self.seconds


#: the rules of each ingestion API (an API not named here is not throttled)
RULES: dict[str, tuple[Rule, ...]] = {
    "httpapi": (Rule(900, 30),),
    "batch": (Rule(30_000, 30), Rule(500_000, 86_400, 3_600)),
}


class ThrottledError(ConfigurationError):
    """A request that would take devices or users past a rate limit; nothing was stored."""

    code = "throttled"

    def __init__(self, body: dict[str, Any], retry_after: int) -> None:
        devices, users = len(body["throttled_devices"]), len(body["throttled_users"])
        super().__init__(
            f"{MESSAGE}: {devices} device(s) and {users} user(s) over "
            f"{body['eps_threshold']:g} events/s; retry in {retry_after} s"
        )
        self.body = body
        self.retry_after = retry_after


@dataclass
class _Window:
    """Counts per id over one rule's window: a total per id, and the counts of each step
    still inside the window (subtracted from the totals as the step leaves)."""

    rule: Rule
    totals: dict[str, int] = field(default_factory=dict)
    steps: deque[tuple[int, dict[str, int]]] = field(default_factory=deque)

    def expire(self, step: int) -> None:
        oldest = step - self.rule.seconds // self.rule.step + 1
        while self.steps and self.steps[0][0] < oldest:
            _, counts = self.steps.popleft()
            self.add(counts, -1)

    def add(self, counts: Mapping[str, int], sign: int = 1, step: int | None = None) -> None:
        if step is not None:
            if not self.steps or self.steps[-1][0] != step:
                self.steps.append((step, {}))
            mine = self.steps[-1][1]
            for key, n in counts.items():
                mine[key] = mine.get(key, 0) + n
        for key, n in counts.items():
            total = self.totals.get(key, 0) + sign * n
            if total > 0:
                self.totals[key] = total
            else:
                self.totals.pop(key, None)

    def remove(self, counts: Mapping[str, int], step: int) -> None:
        """Take back counts added at ``step`` (if that step is still in the window)."""
        for at, mine in self.steps:
            if at == step:
                for key, n in counts.items():
                    mine[key] = mine.get(key, 0) - n
                self.add(counts, -1)

    def over(self, counts: Mapping[str, int]) -> dict[str, float]:
        """The ids ``counts`` would take past the rule, with their events/s."""
        limit, seconds = self.rule.events, self.rule.seconds
        return {
            key: round((self.totals.get(key, 0) + n) / seconds, 2)
            for key, n in counts.items()
            if self.totals.get(key, 0) + n > limit
        }


@dataclass
class Admitted:
    """What an admitted request added to which window, to take back if it is not stored."""

    added: list[tuple[_Window, int, dict[str, int]]] = field(default_factory=list)


def _counts(events: pa.Table, column: str) -> dict[str, int]:
    """Events per distinct non-null ``column`` value: one Arrow group-by."""
    ids = events.select([column]).filter(pc.is_valid(events.column(column)))
    counted = ids.group_by(column, use_threads=False).aggregate([([], "count_all")])
    return dict(
        zip(
            counted.column(column).to_pylist(), counted.column("count_all").to_pylist(), strict=True
        )
    )


class Throttle:
    """The counts of one server process. ``rules`` replaces :data:`RULES` (tests use small
    limits); ``clock`` gives seconds (monotonic)."""

    def __init__(
        self,
        rules: Mapping[str, tuple[Rule, ...]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rules = dict(RULES if rules is None else rules)
        self.clock = clock
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, str, Rule], tuple[_Window, _Window]] = {}

    def admit(self, api: str, api_key: str, events: pa.Table) -> Admitted:
        """Count ``events`` (with ``device_id`` and ``user_id`` columns) for ``api_key``,
        or raise :class:`ThrottledError` counting nothing."""
        rules = self.rules.get(api, ())
        admitted = Admitted()
        if not rules or not events.num_rows:
            return admitted
        devices, users = _counts(events, "device_id"), _counts(events, "user_id")
        now = self.clock()
        with self._lock:
            found = []
            for rule in rules:
                key = (api, api_key, rule)
                pair = self._windows.setdefault(key, (_Window(rule), _Window(rule)))
                step = int(now // rule.step)
                for window in pair:
                    window.expire(step)
                over_devices, over_users = pair[0].over(devices), pair[1].over(users)
                if over_devices or over_users:
                    body = _body(rule, events, over_devices, over_users)
                    raise ThrottledError(body, min(rule.seconds, max(30, rule.step)))
                found += [(pair[0], step, devices), (pair[1], step, users)]
            for window, step, counts in found:
                window.add(counts, step=step)
            admitted.added = found
        return admitted

    def release(self, admitted: Admitted) -> None:
        """Take back an admitted request's counts (it was not stored)."""
        with self._lock:
            for window, step, counts in admitted.added:
                window.remove(counts, step)
            admitted.added = []


def _body(
    rule: Rule, events: pa.Table, devices: dict[str, float], users: dict[str, float]
) -> dict[str, Any]:
    """The 429 body: the throttled ids with their events/s, and the indexes of their events."""
    hit = pc.or_(
        pc.is_in(events.column("device_id"), pa.array(list(devices), pa.string())),
        pc.is_in(events.column("user_id"), pa.array(list(users), pa.string())),
    )
    return {
        "code": 429,
        "error": MESSAGE,
        "eps_threshold": rule.eps,
        "throttled_devices": devices,
        "throttled_users": users,
        "throttled_events": pc.indices_nonzero(pc.fill_null(hit, False)).to_pylist(),
        "window_seconds": rule.seconds,
    }
