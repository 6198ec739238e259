"""Funnels, retention and cohorts computed in plain Python over a list of events and the
current profiles: what the compiled SQL must answer, written from the definitions in
``profilesync.query.analyses`` and nothing else."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from profilesync.query.analyses import CohortDefinition, FunnelQuery, RetentionQuery, Step
from profilesync.query.model import Filter, PropertyRef

EPOCH = datetime(1970, 1, 1)


@dataclass
class Event:
    event_type: str
    user_id: str | None
    time: datetime
    event_properties: dict[str, Any] = field(default_factory=dict)
    user_properties: dict[str, Any] = field(default_factory=dict)
    device_id: str | None = None
    #: the user's properties as stored with the event: every value sent so far by this
    #: user (or device), in arrival order (see profilesync.events.userprops)
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def uid(self) -> str:
        return self.user_id if self.user_id is not None else f"device:{self.device_id}"

    def row(self) -> dict[str, Any]:
        """As the store's test helpers append it."""
        return {
            "event_type": self.event_type,
            "user_id": self.user_id,
            "device_id": self.device_id,
            "time": self.time,
            "event_properties": json.dumps(self.event_properties)
            if self.event_properties
            else None,
            "user_properties": json.dumps(self.user_properties) if self.user_properties else None,
            "insert_id": None,
        }


@dataclass
class World:
    events: list[Event]
    profiles: dict[str, dict[str, Any]]  # user_id -> current properties
    cohorts: dict[str, CohortDefinition] = field(default_factory=dict)
    now: datetime = datetime(2024, 6, 1)

    def __post_init__(self) -> None:
        states: dict[str, dict[str, Any]] = defaultdict(dict)
        for e in self.events:  # in arrival order
            states[e.uid].update(e.user_properties)
            e.state = dict(states[e.uid])

    # -- properties and filters ----------------------------------------------------------

    def value(self, ref: PropertyRef, e: Event) -> Any:
        if ref.kind == "profile":
            return self.profiles.get(e.user_id or "", {}).get(ref.name)
        if ref.kind == "user":
            return _text(e.state.get(ref.name))
        if ref.kind == "event":
            return _text(e.event_properties.get(ref.name))
        raise AssertionError(f"the reference has no {ref.kind} kind")

    def holds(self, f: Filter, e: Event) -> bool:
        if f.kind == "cohort":
            inside = e.user_id is not None and e.user_id in self.members(f.name)
            return inside if f.op == "is" else not inside
        return _compare(f, self.value(f, e))

    def matches(self, step: Step, e: Event) -> bool:
        return e.event_type == step.event_type and all(self.holds(f, e) for f in step.filters)

    # -- cohorts -------------------------------------------------------------------------

    def members(self, name: str) -> set[str]:
        return cohort(self, self.cohorts[name])


def _text(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def _compare(f: Filter, value: Any) -> bool:
    if f.op == "is set":
        return value is not None
    if f.op == "is not set":
        return value is None
    if f.op in ("is", "is not"):
        inside = value is not None and any(_same(value, v) for v in f.values)
        return inside if f.op == "is" else not inside
    if value is None:
        return False
    left, right = float(value), float(f.values[0])
    return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[f.op]


def _same(value: Any, wanted: Any) -> bool:
    if isinstance(value, float):
        return value == float(wanted)
    return str(value) == str(wanted)


def _smallest(values: list[Any]) -> Any:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def _groups(per_user: dict[str, Any], limit: int) -> Callable[[str], tuple[Any, bool, int]]:
    """user -> (group, named, rank): the top ``limit`` groups by users, the rest other."""
    sizes: dict[Any, int] = defaultdict(int)
    for grp in per_user.values():
        sizes[grp] += 1
    order = sorted(sizes, key=lambda g: (-sizes[g], g is None, g if g is not None else 0))
    rank = {g: i for i, g in enumerate(order, 1)}

    def of(uid: str) -> tuple[Any, bool, int]:
        grp = per_user[uid]
        return (grp, True, rank[grp]) if rank[grp] <= limit else (None, False, 10**9)

    return of


def label(grp: Any, named: bool) -> str:
    if not named:
        return "other"
    return "(none)" if grp is None else str(grp)


# -- funnels -----------------------------------------------------------------------------


def funnel(world: World, q: FunnelQuery, start: datetime, end: datetime) -> dict[str, Any]:
    """``{"steps": [...], "groups": [...]}`` as the product answers (groups when grouped)."""
    window = timedelta(seconds=q.window_seconds)
    n = len(q.steps)
    by_user: dict[str, list[Event]] = defaultdict(list)
    for e in world.events:
        inside = start <= e.time < end + window and all(world.holds(f, e) for f in q.where)
        if inside and any(world.matches(s, e) for s in q.steps):
            by_user[e.uid].append(e)
    times: dict[str, list[datetime]] = {}
    group: dict[str, Any] = {}
    for uid, events in by_user.items():
        step1 = [e for e in events if world.matches(q.steps[0], e) and e.time < end]
        if not step1:
            continue
        t1 = min(e.time for e in step1)
        if q.group_by:
            group[uid] = _smallest([world.value(q.group_by, e) for e in step1 if e.time == t1])
        times[uid] = (
            _walk(world, q, events, t1, window)
            if q.order != "any"
            else _any(world, q, events, t1, window)
        )
    answer: dict[str, Any] = {"steps": _steps(q, list(times.values()), n)}
    if q.group_by:
        of = _groups(group, q.limit)
        members: dict[tuple[Any, bool, int], list[list[datetime]]] = defaultdict(list)
        for uid, ts in times.items():
            members[of(uid)].append(ts)
        answer["groups"] = [
            {"label": label(g, named), "steps": _steps(q, members[(g, named, r)], n)}
            for g, named, r in sorted(members, key=lambda k: k[2])
        ]
    return answer


def _after(world: World, e: Event, t: datetime, previous: Step) -> bool:
    return e.time > t or (e.time == t and not world.matches(previous, e))


def _walk(
    world: World, q: FunnelQuery, events: list[Event], t1: datetime, window: timedelta
) -> list[datetime]:
    reached, previous = [t1], t1
    for k in range(1, len(q.steps)):
        near = [e for e in events if previous <= e.time <= t1 + window]
        found = [
            e.time
            for e in near
            if world.matches(q.steps[k], e) and _after(world, e, previous, q.steps[k - 1])
        ]
        if not found:
            break
        tk = min(found)
        if q.order == "strict":
            others = [
                e.time for e in near if not world.matches(q.steps[k], e) and e.time > previous
            ]
            if others and min(others) < tk:
                break
        reached.append(tk)
        previous = tk
    return reached


def _any(
    world: World, q: FunnelQuery, events: list[Event], t1: datetime, window: timedelta
) -> list[datetime]:
    reached = [t1]
    for step in q.steps[1:]:
        found = [
            e.time for e in events
            if t1 <= e.time <= t1 + window and world.matches(step, e) and _after(world, e, t1, q.steps[0])
        ]  # fmt: skip
        if not found:
            break
        reached.append(max(reached[-1], min(found)) if len(reached) > 1 else min(found))
    return reached


def _steps(q: FunnelQuery, users: list[list[datetime]], n: int) -> list[dict[str, Any]]:
    counts = [sum(1 for ts in users if len(ts) > k) for k in range(n)]
    out = []
    for k, step in enumerate(q.steps):
        previous = counts[k - 1] if k else counts[0]
        delays = [(ts[k] - ts[0]).total_seconds() for ts in users if len(ts) > k]
        out.append(
            {
                "event_type": step.event_type,
                "users": counts[k],
                "conversion": counts[k] / counts[0] if counts[0] else None,
                "step_conversion": counts[k] / previous if previous else None,
                "drop_off": previous - counts[k],
                "median_seconds_to_convert": statistics.median(delays) if k and delays else None,
            }
        )
    return out


# -- retention ---------------------------------------------------------------------------


def _bucket(at: datetime, interval: str) -> int:
    day = (at - EPOCH).days
    return day if interval == "day" else (day + 3) // 7


def retention(world: World, q: RetentionQuery, start: datetime, end: datetime) -> dict[str, Any]:
    """``{bucket start: (users, returned)}`` overall and, when grouped, per group label."""
    by_user: dict[str, list[Event]] = defaultdict(list)
    for e in world.events:
        if e.time >= start and all(world.holds(f, e) for f in q.where):
            by_user[e.uid].append(e)
    starts: dict[str, datetime] = {}
    group: dict[str, Any] = {}
    offsets: dict[str, set[int]] = {}
    for uid, events in by_user.items():
        firsts = [e for e in events if world.matches(q.start_event, e) and e.time < end]
        if not firsts:
            continue
        t0 = min(e.time for e in firsts)
        starts[uid] = t0
        if q.group_by:
            group[uid] = _smallest([world.value(q.group_by, e) for e in firsts if e.time == t0])
        offsets[uid] = {
            _bucket(e.time, q.interval) - _bucket(t0, q.interval)
            for e in events
            if world.matches(q.return_event, e) and _after(world, e, t0, q.start_event)
        }

    def table(users: list[str]) -> dict[int, tuple[int, list[int]]]:
        out: dict[int, tuple[int, list[int]]] = {}
        for b in sorted({_bucket(starts[u], q.interval) for u in users}):
            cohort_users = [u for u in users if _bucket(starts[u], q.interval) == b]
            returned = []
            for k in range(q.buckets + 1):
                if q.mode == "on":
                    returned.append(sum(1 for u in cohort_users if k in offsets[u]))
                else:
                    returned.append(sum(1 for u in cohort_users if any(o >= k for o in offsets[u])))
            out[b] = (len(cohort_users), returned)
        return out

    answer: dict[str, Any] = {"cohorts": table(list(starts))}
    if q.group_by:
        of = _groups(group, q.limit)
        members: dict[tuple[Any, bool, int], list[str]] = defaultdict(list)
        for uid in starts:
            members[of(uid)].append(uid)
        answer["groups"] = {
            label(g, named): table(members[(g, named, r)])
            for g, named, r in sorted(members, key=lambda k: k[2])
        }
    return answer


# -- cohorts -----------------------------------------------------------------------------


def cohort(world: World, definition: CohortDefinition) -> set[str]:
    users = set(world.profiles) | {e.user_id for e in world.events if e.user_id is not None}
    members = set()
    for uid in users:
        profile = world.profiles.get(uid, {})
        if not all(_compare(f, profile.get(f.name)) for f in definition.where):
            continue
        ok = True
        for b in definition.behaviour:
            since = world.now - timedelta(days=b.days)
            count = sum(
                1 for e in world.events
                if e.user_id == uid and e.event_type == b.event_type and since < e.time <= world.now
            )  # fmt: skip
            ok = ok and ((count >= b.times) == b.did)
        if ok:
            members.add(uid)
    return members
