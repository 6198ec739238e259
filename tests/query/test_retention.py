"""Retention on every store, each answer compared with the plain-Python reference."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from typing import Any

import pytest

from profilesync.query.analyses import RetentionQuery
from profilesync.query.retention import bucket_number, retention
from profilesync.store.protocol import Store
from tests.query import reference
from tests.query.conftest import load, sync
from tests.query.reference import Event, World

RANGE = {"start": "2024-05-01", "end": "2024-05-14"}
START, END = datetime(2024, 5, 1), datetime(2024, 5, 15)


def day(n: int, hour: int = 12) -> datetime:
    return datetime(2024, 5, n, hour)


def table(cohorts: list[dict[str, Any]], interval: str) -> dict[int, tuple[int, list[int]]]:
    return {
        bucket_number(
            datetime.combine(date.fromisoformat(c["start"]), datetime.min.time()), interval
        ): (
            c["users"],
            c["returned"],
        )
        for c in cohorts
        if c["users"]
    }


def ask(store: Store, world: World, **spec: Any) -> dict[str, Any]:
    query = RetentionQuery(**{**RANGE, **spec})
    answer = retention(store, query)
    expected = reference.retention(world, query, START, END)
    assert table(answer["cohorts"], query.interval) == expected["cohorts"]
    for c in answer["cohorts"]:
        assert c["rates"] == [n / c["users"] if c["users"] else None for n in c["returned"]]
    if query.group_by:
        got = {g["label"]: table(g["cohorts"], query.interval) for g in answer["groups"]}
        assert got == expected["groups"]
    return answer


def small_world() -> World:
    events = [
        Event("Signup", "u1", day(1)),
        Event("Use", "u1", day(1, 13)),  # offset 0
        Event("Use", "u1", day(3)),  # offset 2
        Event("Signup", "u2", day(1)),
        Event("Use", "u2", day(2)),  # offset 1
        Event("Signup", "u3", day(2, 23)),
        Event("Use", "u3", day(3, 0)),  # the next day, one hour later: offset 1
        Event("Use", "u3", day(12)),  # offset 10: beyond 7 buckets
        Event("Use", "u4", day(1)),  # never started
        Event("Signup", "u5", day(2), user_properties={"plan": "pro"}),
        Event("Signup", "u5", day(2)),  # the same millisecond as its start: not a return
    ]
    profiles = {"u1": {"Title": "A", "Score": 1.0}, "u2": {"Title": "B", "Score": 0.0}}
    return World(events, profiles)


@pytest.fixture
def world(store: Store) -> World:
    w = small_world()
    load(store, w)
    return w


def test_on_and_on_or_after(store: Store, world: World) -> None:
    on = ask(store, world, start_event="Signup", return_event="Use")
    first, second = on["cohorts"][:2]
    assert first["start"] == "2024-05-01"
    assert (first["users"], first["returned"]) == (2, [1, 1, 1, 0, 0, 0, 0, 0])
    assert (second["users"], second["returned"]) == (2, [0, 1, 0, 0, 0, 0, 0, 0])
    assert first["rates"][:3] == [0.5, 0.5, 0.5]
    after = ask(store, world, start_event="Signup", return_event="Use", mode="on_or_after")
    assert after["cohorts"][0]["returned"] == [2, 2, 1, 0, 0, 0, 0, 0]
    assert after["cohorts"][1]["returned"] == [1, 1, 1, 1, 1, 1, 1, 1]  # u3 came back on day 12
    assert len(after["cohorts"]) == 14 and after["cohorts"][5]["users"] == 0


def test_same_event_returns_only_when_sent_again(store: Store, world: World) -> None:
    answer = ask(store, world, start_event="Signup", return_event="Signup", buckets=3)
    assert answer["cohorts"][1]["returned"] == [0, 0, 0, 0]


def test_weeks_and_groups(store: Store, world: World) -> None:
    ask(store, world, start_event="Signup", return_event="Use", interval="week", buckets=2)
    answer = ask(
        store, world, start_event="Signup", return_event="Use",
        group_by={"kind": "profile", "name": "Title"},
    )  # fmt: skip
    assert [g["label"] for g in answer["groups"]] == ["(none)", "A", "B"]
    sync(store, world, {"u3": {"Title": "A", "Score": 0.5}})
    moved = ask(store, world, start_event="Signup", return_event="Use",
                group_by={"kind": "profile", "name": "Title"})  # fmt: skip
    assert moved["groups"][0]["label"] == "A"


def random_world(seed: int) -> World:
    rng = random.Random(seed)
    events = [
        Event(
            rng.choice(["Signup", "Use", "Use", "Other"]),
            f"u{rng.randrange(50)}",
            datetime(2024, 4, 28) + timedelta(minutes=rng.randrange(60 * 24 * 30)),
            user_properties={"plan": rng.choice(["free", "pro"])} if rng.random() < 0.3 else {},
        )
        for _ in range(500)
    ]
    profiles = {
        f"u{i}": {"Title": rng.choice(["A", "B", "C"]), "Score": 0.5} for i in range(0, 50, 2)
    }
    return World(events, profiles)


@pytest.mark.parametrize("mode", ["on", "on_or_after"])
def test_random_events_match_the_reference(store: Store, mode: str) -> None:
    world = random_world(11)
    load(store, world)
    for interval in ("day", "week"):
        ask(store, world, start_event="Signup", return_event="Use", interval=interval, mode=mode)
    ask(store, world, start_event="Use", return_event="Use", mode=mode, buckets=10,
        group_by={"kind": "user", "name": "plan"})  # fmt: skip
    ask(store, world, start_event="Signup", return_event="Use", mode=mode, limit=2,
        group_by={"kind": "profile", "name": "Title"},
        where=[{"kind": "profile", "name": "Title", "op": "is not", "values": ["C"]}])  # fmt: skip
