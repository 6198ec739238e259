"""Segmentation against answers computed by hand on the fixed world of ``conftest.py``.

Days are 2024-05-01..03. Purchases: day 1 user-0001 (10) and user-0002 (5); day 2
user-0002 (7), user-0003 (3), user-0004 (100) and user-0005 (1, no profile).
"""

from __future__ import annotations

from typing import Any

import pytest

from profilesync.errors import ConfigurationError, NotFoundError
from profilesync.events import query as q
from tests.events.conftest import World

RANGE = {"start": "2024-05-01", "end": "2024-05-03"}


def seg(world: World, **spec: Any) -> dict[str, Any]:
    return q.segmentation(world.store, q.SegmentationQuery(**{**RANGE, **spec}))


def by_label(result: dict[str, Any]) -> dict[str, list[Any]]:
    return {s["label"]: s["values"] for s in result["series"]}


def test_buckets_are_the_days_asked_for(world: World) -> None:
    result = seg(world, events=["Purchase"])
    assert result["buckets"] == [
        "2024-05-01T00:00:00Z",
        "2024-05-02T00:00:00Z",
        "2024-05-03T00:00:00Z",
    ]
    assert by_label(result) == {"Purchase": [2, 4, 0]}
    assert result["series"][0]["total"] == 6


def test_grouped_by_a_profile_property_uses_the_current_value(world: World) -> None:
    # user-0002 was on "free" when it purchased and is "pro" now: counted under pro
    result = seg(world, events=["Purchase"], group_by={"kind": "profile", "name": "Plan"})
    assert [s["label"] for s in result["series"]] == ["pro", "enterprise", "free", "(none)"]
    assert by_label(result) == {
        "pro": [2, 1, 0],
        "enterprise": [0, 1, 0],
        "free": [0, 1, 0],
        "(none)": [0, 1, 0],
    }
    assert [s["total"] for s in result["series"]] == [3, 1, 1, 1]


def test_grouped_by_the_value_at_event_time(world: World) -> None:
    result = seg(world, events=["Purchase"], group_by={"kind": "user", "name": "plan"})
    assert by_label(result) == {
        "free": [1, 2, 0],
        "enterprise": [0, 1, 0],
        "pro": [1, 0, 0],
        "(none)": [0, 1, 0],
    }
    assert result["series"][0]["label"] == "free"


def test_sum_and_average_of_an_event_property(world: World) -> None:
    amount = {"kind": "event", "name": "amount"}
    plan = {"kind": "profile", "name": "Plan"}
    total = seg(world, events=["Purchase"], metric="sum", property=amount, group_by=plan)
    assert by_label(total) == {
        "enterprise": [0, 100, 0],
        "pro": [15, 7, 0],
        "free": [0, 3, 0],
        "(none)": [0, 1, 0],
    }
    average = seg(world, events=["Purchase"], metric="avg", property=amount, group_by=plan)
    pro = next(s for s in average["series"] if s["label"] == "pro")
    assert pro["values"] == [7.5, 7.0, None]
    assert pro["total"] == pytest.approx(22 / 3)


def test_unique_users_do_not_add_up_across_days(world: World) -> None:
    plan = {"kind": "profile", "name": "Plan"}
    result = seg(world, events=["Purchase"], metric="uniques", group_by=plan)
    pro = next(s for s in result["series"] if s["label"] == "pro")
    assert pro["values"] == [2, 1, 0]
    assert pro["total"] == 2  # user-0001 and user-0002, not 3
    views = seg(world, events=["View"], metric="uniques")
    # a device-only event counts its device as a user
    assert by_label(views) == {"View": [2, 1, 2]}
    assert views["series"][0]["total"] == 5


def test_filters_on_profile_and_event_properties(world: World) -> None:
    us = {"kind": "profile", "name": "Country", "op": "is", "values": ["US"]}
    assert by_label(seg(world, events=["Purchase"], filters=[us])) == {"Purchase": [2, 1, 0]}
    big = {"kind": "event", "name": "amount", "op": ">", "values": [5]}
    assert by_label(seg(world, events=["Purchase"], filters=[big])) == {"Purchase": [1, 2, 0]}
    # "is not" keeps users without a value (user-0005 has no profile)
    not_pro = {"kind": "profile", "name": "Plan", "op": "is not", "values": ["pro"]}
    assert by_label(seg(world, events=["Purchase"], filters=[not_pro])) == {"Purchase": [0, 3, 0]}
    no_profile = {"kind": "profile", "name": "Plan", "op": "is not set"}
    assert by_label(seg(world, events=["Purchase"], filters=[no_profile])) == {
        "Purchase": [0, 1, 0]
    }
    pricing = {"kind": "event", "name": "path", "op": "contains", "values": ["PRIC"]}
    assert by_label(seg(world, events=["View"], filters=[pricing])) == {"View": [1, 1, 0]}


def test_profile_filter_with_profile_group(world: World) -> None:
    us = {"kind": "profile", "name": "Country", "op": "is", "values": ["US", "DE"]}
    result = seg(
        world, events=["Purchase"], filters=[us], group_by={"kind": "profile", "name": "Plan"}
    )
    assert by_label(result) == {"pro": [2, 1, 0], "enterprise": [0, 1, 0]}


def test_top_groups_and_other(world: World) -> None:
    result = seg(world, events=["Purchase"], group_by={"kind": "profile", "name": "Plan"}, limit=2)
    assert by_label(result) == {"pro": [2, 1, 0], "enterprise": [0, 1, 0], "other": [0, 2, 0]}
    assert result["series"][-1]["other"] is True
    uniques = seg(
        world,
        events=["Purchase"],
        metric="uniques",
        group_by={"kind": "profile", "name": "Plan"},
        limit=1,
    )
    assert by_label(uniques) == {"pro": [2, 1, 0], "other": [0, 3, 0]}
    assert uniques["series"][-1]["total"] == 3


def test_several_events_give_one_series_each(world: World) -> None:
    result = seg(world, events=["Purchase", "View"])
    assert by_label(result) == {"Purchase": [2, 4, 0], "View": [2, 1, 2]}
    grouped = seg(world, events=["Purchase", "View"], group_by={"kind": "profile", "name": "Plan"})
    assert by_label(grouped)["View: pro"] == [1, 1, 0]
    assert by_label(grouped)["Purchase: pro"] == [2, 1, 0]


def test_group_by_event_property_and_field(world: World) -> None:
    result = seg(world, events=["View"], group_by={"kind": "event", "name": "path"})
    assert by_label(result) == {"/docs": [1, 0, 1], "/pricing": [1, 1, 0], "(none)": [0, 0, 1]}


def test_week_and_hour_intervals(world: World) -> None:
    weekly = seg(world, events=["Purchase"], interval="week")
    assert weekly["buckets"] == ["2024-04-29T00:00:00Z"]  # the Monday before
    assert by_label(weekly) == {"Purchase": [6]}
    hourly = seg(world, events=["Purchase"], interval="hour", start="2024-05-02", end="2024-05-02")
    assert len(hourly["buckets"]) == 24
    assert hourly["series"][0]["values"][12] == 4


def test_unknown_names_are_refused_with_what_exists(world: World) -> None:
    with pytest.raises(NotFoundError, match="Plan"):
        seg(world, events=["Purchase"], group_by={"kind": "profile", "name": "Tier"})
    with pytest.raises(ConfigurationError, match="platform"):
        seg(world, events=["Purchase"], group_by={"kind": "field", "name": "nope"})
    with pytest.raises(ValueError, match="needs a property"):
        q.SegmentationQuery(events=["Purchase"], metric="sum")


def test_values_are_bound_not_spliced(world: World) -> None:
    sneaky = {"kind": "event", "name": "path'); DROP TABLE events; --", "op": "is set"}
    assert by_label(seg(world, events=["View"], filters=[sneaky])) == {"View": [0, 0, 0]}
    odd = {"kind": "profile", "name": "Plan", "op": "is", "values": ["x' OR '1'='1"]}
    assert by_label(seg(world, events=["Purchase"], filters=[odd])) == {"Purchase": [0, 0, 0]}
    assert seg(world, events=["Purchase"])["series"][0]["total"] == 6


def test_user_lookup_shows_profile_and_events(world: World) -> None:
    found = q.user_lookup(world.store, "user-0002")
    assert found["profile"]["properties"] == {"Plan": "pro", "Country": "US"}
    assert found["profile"]["details"]["Plan"]["source"] == "users"
    assert found["event_count"] == 3
    assert [e["event_type"] for e in found["events"]] == ["Purchase", "Purchase", "View"]
    assert found["events"][0]["user_properties"] == {"plan": "free"}
    assert q.user_lookup(world.store, "user-0005")["profile"] is None
    with pytest.raises(NotFoundError):
        q.user_lookup(world.store, "nobody-here")


def test_known_lists_types_and_properties(world: World) -> None:
    known = q.known(world.store)
    assert [(t["name"], t["count"]) for t in known["event_types"]] == [("Purchase", 6), ("View", 5)]
    props = known["properties"]
    assert [p["name"] for p in props["profile"]] == ["Country", "Plan"]
    assert props["profile"][0]["source"] == "users"
    assert [p["name"] for p in props["event"]] == ["amount", "path"]
    assert [p["name"] for p in props["user"]] == ["plan"]
