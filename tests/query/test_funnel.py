"""Funnels on every store, each answer compared with the plain-Python reference."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import pytest

from profilesync.query.analyses import FunnelQuery
from profilesync.query.funnel import funnel
from profilesync.store.protocol import Store
from tests.query import reference
from tests.query.conftest import load, sync
from tests.query.reference import Event, World

T0 = datetime(2024, 5, 1, 9)
RANGE = {"start": "2024-05-01", "end": "2024-05-07"}
START, END = datetime(2024, 5, 1), datetime(2024, 5, 8)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def ask(store: Store, world: World, **spec: Any) -> dict[str, Any]:
    """The store's answer, checked against the reference's; the answer."""
    query = FunnelQuery(**{**RANGE, **spec})
    answer = funnel(store, query)
    expected = reference.funnel(world, query, START, END)
    assert answer["steps"] == expected["steps"]
    if query.group_by:
        got = [{"label": g["label"], "steps": g["steps"]} for g in answer["groups"]]
        assert got == expected["groups"]
    return answer


def users(answer: dict[str, Any]) -> list[int]:
    return [s["users"] for s in answer["steps"]]


STEPS = ["View", "Cart", "Buy"]


def small_world() -> World:
    events = [
        # u1 converts through all steps; u2 stops at Cart; u3 buys outside the 1h window
        Event("View", "u1", at(0), user_properties={"plan": "free"}),
        Event("Cart", "u1", at(10)),
        Event("Buy", "u1", at(20), user_properties={"plan": "pro"}),
        Event("View", "u2", at(0)),
        Event("Cart", "u2", at(5)),
        Event("View", "u3", at(0)),
        Event("Cart", "u3", at(30)),
        Event("Buy", "u3", at(61)),
        # u4: three steps at the same millisecond (one batch)
        Event("View", "u4", at(5)),
        Event("Cart", "u4", at(5)),
        Event("Buy", "u4", at(5)),
        # u5 has no profile; Buy before Cart (converts only in any order)
        Event("View", "u5", at(1)),
        Event("Buy", "u5", at(2)),
        Event("Cart", "u5", at(3)),
        # u6 was deleted after sending events; Cart before View does not count
        Event("Cart", "u6", at(0)),
        Event("View", "u6", at(1)),
        # an anonymous device
        Event("View", None, at(2), device_id="d1"),
        Event("Cart", None, at(3), device_id="d1"),
    ]
    profiles = {
        "u1": {"Title": "Engineer", "Score": 0.9},
        "u2": {"Title": "Engineer", "Score": 0.2},
        "u3": {"Title": "Manager", "Score": 0.5},
        "u4": {"Title": "Manager", "Score": 0.95},
        "u6": {"Title": "Manager", "Score": 0.1},
    }
    return World(events, profiles)


@pytest.fixture
def world(store: Store) -> World:
    w = small_world()
    load(store, w)
    sync(store, w, {}, deleted=("u6",))
    return w


def test_steps_within_the_window_in_this_order(store: Store, world: World) -> None:
    answer = ask(store, world, steps=STEPS, window="1h")
    # entered: u1..u6 and d1; Cart: u1 u2 u3 u4 u5 d1 (u6's Cart came before View); Buy: u1, u4
    assert users(answer) == [7, 6, 2]
    assert answer["steps"][2]["conversion"] == pytest.approx(2 / 7)
    assert answer["steps"][1]["drop_off"] == 1
    # u1 took 20 minutes, u4 no time: the median is 10 minutes
    assert answer["steps"][2]["median_seconds_to_convert"] == 600.0
    wider = ask(store, world, steps=STEPS, window="2h")
    assert users(wider) == [7, 6, 3]  # u3's Buy at 61 minutes is in


def test_any_and_strict_order(store: Store, world: World) -> None:
    assert users(ask(store, world, steps=STEPS, window="1h", order="any")) == [7, 6, 3]  # + u5
    # strict: u5's View, Buy, Cart has Buy between View and Cart
    assert users(ask(store, world, steps=STEPS, window="1h", order="strict")) == [7, 5, 2]


def test_grouped_by_current_profile_and_by_value_at_step_one(store: Store, world: World) -> None:
    answer = ask(
        store, world, steps=STEPS, window="1h", group_by={"kind": "profile", "name": "Title"}
    )
    assert {g["label"]: users(g) for g in answer["groups"]} == {
        "Manager": [2, 2, 1],
        "Engineer": [2, 2, 1],
        "(none)": [3, 2, 0],  # u5 (no profile), u6 (deleted), the device
    }
    by_plan = ask(store, world, steps=STEPS, window="1h", group_by={"kind": "user", "name": "plan"})
    # u1 was on free at step 1 and on pro when it bought: counted under free
    assert {g["label"]: users(g) for g in by_plan["groups"]} == {
        "(none)": [6, 5, 1],
        "free": [1, 1, 1],
    }


def test_a_profile_change_moves_users_between_groups(store: Store, world: World) -> None:
    sync(store, world, {"u2": {"Title": "Manager", "Score": 0.2}})
    answer = ask(
        store, world, steps=STEPS, window="1h", group_by={"kind": "profile", "name": "Title"}
    )
    assert {g["label"]: users(g) for g in answer["groups"]}["Manager"] == [3, 3, 1]


def test_filters_on_profiles_and_on_steps(store: Store, world: World) -> None:
    high = {"kind": "profile", "name": "Score", "op": ">", "values": [0.4]}
    assert users(ask(store, world, steps=STEPS, window="1h", where=[high])) == [3, 3, 2]
    free_view = {
        "event_type": "View",
        "filters": [{"kind": "user", "name": "plan", "values": ["free"]}],
    }
    assert users(ask(store, world, steps=[free_view, "Cart"], window="1h")) == [1, 1]


def test_same_event_type_twice_needs_two_events(store: Store, world: World) -> None:
    # one View each: none reaches the second View (an event is never two steps)
    assert users(ask(store, world, steps=["View", "View"], window="1h")) == [7, 0]


def test_a_device_is_never_a_user_whose_id_reads_the_same(store: Store) -> None:
    """A user whose id is written ``device:d9`` or ``d8`` and the anonymous devices ``d9``
    and ``d8`` are four people: no step of one is another's."""
    events = [
        Event("View", "device:d9", at(0)),
        Event("Cart", None, at(5), device_id="d9"),
        Event("View", None, at(0), device_id="d8"),
        Event("Cart", "d8", at(5)),
    ]
    w = World(events, {"device:d9": {"Title": "Engineer"}, "d8": {"Title": "Manager"}})
    load(store, w)
    answer = funnel(store, FunnelQuery(**RANGE, steps=["View", "Cart"], window="1h"))
    assert users(answer) == [2, 0]
    by_title = funnel(
        store,
        FunnelQuery(
            **RANGE,
            steps=["View", "Cart"],
            window="1h",
            group_by={"kind": "profile", "name": "Title"},
        ),
    )
    # the device d8 has no profile, though a user d8 has one
    assert {g["label"]: users(g) for g in by_title["groups"]} == {
        "Engineer": [1, 0],
        "(none)": [1, 0],
    }


def random_world(seed: int) -> World:
    rng = random.Random(seed)
    kinds = ["View", "Cart", "Buy", "Other"]
    events = []
    for _ in range(400):
        uid = f"u{rng.randrange(40)}"
        when = T0 + timedelta(
            minutes=rng.choice([0, 0, 1, 5, 30, 59, 60, 61, 300, 2000, 8000]) + rng.randrange(3000)
        )
        props = {"plan": rng.choice(["free", "pro"])} if rng.random() < 0.7 else {}
        events.append(Event(rng.choice(kinds), uid, when, {"n": rng.randrange(3)}, props))
    profiles = {
        f"u{i}": {"Title": rng.choice(["A", "B", None]), "Score": rng.choice([0.1, 0.5, 0.9])}
        for i in range(40)
        if rng.random() < 0.8
    }
    return World(events, profiles)


@pytest.mark.parametrize("order", ["this", "strict", "any"])
def test_random_events_match_the_reference(store: Store, order: str) -> None:
    world = random_world(7)
    load(store, world)
    for window in ("1h", "1d"):
        ask(store, world, steps=["View", "Cart", "Buy"], window=window, order=order)
    ask(store, world, steps=["View", "View", "Buy"], window="2d", order=order,
        group_by={"kind": "profile", "name": "Title"}, limit=2)  # fmt: skip
    step = {
        "event_type": "Cart",
        "filters": [{"kind": "event", "name": "n", "op": ">=", "values": [1]}],
    }
    ask(store, world, steps=["Other", step], window="3h", order=order,
        group_by={"kind": "user", "name": "plan"})  # fmt: skip
