"""Saved cohorts on every store: stored definitions, members now (against the reference),
and the cohort as a filter in segmentation, funnels and retention."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from profilesync.app import analyses
from profilesync.errors import ConfigurationError, NotFoundError
from profilesync.query import SegmentationQuery, segmentation
from profilesync.query.analyses import CohortDefinition, parse_behaviour
from profilesync.store.protocol import Store
from tests.query import reference
from tests.query.conftest import load, sync
from tests.query.reference import Event, World

NOW = datetime(2024, 6, 1)


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def small_world() -> World:
    events = [
        Event("Buy", "u1", ago(1)),
        Event("Buy", "u1", ago(2)),
        Event("Buy", "u2", ago(3)),
        Event("Buy", "u2", ago(40)),  # outside 30 days
        Event("Buy", "u3", ago(1)),
        Event("Buy", "u3", ago(5)),
        Event("View", "u4", ago(1)),  # no profile
        Event("Buy", None, ago(1), device_id="d1"),  # anonymous: never a member
    ]
    profiles = {
        "u1": {"Title": "Engineer", "Score": 0.9},
        "u2": {"Title": "Engineer", "Score": 0.95},
        "u3": {"Title": "Manager", "Score": 0.85},
        "u5": {"Title": "Engineer", "Score": 0.1},  # a profile, no events
    }
    return World(events, profiles, now=NOW)


@pytest.fixture
def world(store: Store) -> World:
    w = small_world()
    load(store, w)
    return w


DEFINITIONS: dict[str, dict[str, Any]] = {
    "buyers": {"behaviour": [{"event_type": "Buy", "times": 2, "days": 30}]},
    "engineer buyers": {
        "where": [{"kind": "profile", "name": "Title", "values": ["Engineer"]}],
        "behaviour": [{"event_type": "Buy", "times": 2, "days": 30}],
    },
    "likely, not buying": {
        "where": [{"kind": "profile", "name": "Score", "op": ">", "values": [0.8]}],
        "behaviour": [{"did": False, "event_type": "Buy", "times": 2, "days": 30}],
    },
    "never bought lately": {"behaviour": [{"did": False, "event_type": "Buy", "days": 7}]},
    "untitled": {"where": [{"kind": "profile", "name": "Title", "op": "is not set"}]},
}


def members(store: Store, name: str) -> list[str]:
    return list(analyses.cohort_export(store, name, now=NOW))


def test_members_match_the_reference(store: Store, world: World) -> None:
    for name, definition in DEFINITIONS.items():
        analyses.cohort_add(store, name, definition)
        world.cohorts[name] = CohortDefinition.model_validate(definition)
        assert members(store, name) == sorted(reference.cohort(world, world.cohorts[name])), name
    assert members(store, "buyers") == ["u1", "u3"]
    assert members(store, "likely, not buying") == ["u2"]
    assert members(store, "never bought lately") == ["u4", "u5"]
    assert members(store, "untitled") == ["u4"]
    shown = analyses.cohort_show(store, "buyers", sample=1, now=NOW)
    assert (shown["size"], shown["sample"]) == (2, ["u1"])
    assert shown["definition"]["behaviour"][0]["times"] == 2


def test_membership_follows_a_profile_sync(store: Store, world: World) -> None:
    analyses.cohort_add(store, "engineer buyers", DEFINITIONS["engineer buyers"])
    assert members(store, "engineer buyers") == ["u1"]
    sync(store, world, {"u3": {"Title": "Engineer", "Score": 0.85}})
    assert members(store, "engineer buyers") == ["u1", "u3"]
    sync(store, world, {}, deleted=("u1",))
    assert members(store, "engineer buyers") == ["u3"]


def test_saved_definitions_are_checked_listed_updated_and_deleted(
    store: Store, world: World
) -> None:
    analyses.cohort_add(store, "buyers", DEFINITIONS["buyers"])
    with pytest.raises(ConfigurationError, match="exists"):
        analyses.cohort_add(store, "buyers", DEFINITIONS["untitled"])
    with pytest.raises(NotFoundError, match="Plan"):
        analyses.cohort_add(
            store, "x", {"where": [{"kind": "profile", "name": "Plan", "values": ["a"]}]}
        )
    with pytest.raises(ValueError, match="needs a condition"):
        analyses.cohort_add(store, "x", {})
    analyses.cohort_update(store, "buyers", {"behaviour": [{"event_type": "Buy", "times": 1}]})
    assert [c["name"] for c in analyses.cohort_list(store)] == ["buyers"]
    assert members(store, "buyers") == ["u1", "u2", "u3"]
    analyses.cohort_delete(store, "buyers")
    with pytest.raises(NotFoundError, match="no cohort named 'buyers'"):
        analyses.cohort_show(store, "buyers")


def test_a_cohort_filters_segmentation_funnels_and_retention(store: Store, world: World) -> None:
    analyses.cohort_add(
        store,
        "engineers",
        {"where": [{"kind": "profile", "name": "Title", "values": ["Engineer"]}]},
    )
    world.cohorts["engineers"] = CohortDefinition.model_validate(
        {"where": [{"kind": "profile", "name": "Title", "values": ["Engineer"]}]}
    )
    days = {"start": "2024-04-01", "end": "2024-05-31"}
    inside = {"kind": "cohort", "name": "engineers"}
    outside = {**inside, "op": "is not"}

    def buys(*filters: dict[str, Any]) -> int:
        q = SegmentationQuery(events=["Buy"], interval="month", filters=list(filters), **days)  # type: ignore[arg-type]
        return sum(s["total"] for s in segmentation(store, q)["series"])

    assert (buys(), buys(inside), buys(outside)) == (7, 4, 3)  # u1, u2: 4; u3, d1: 3
    q = analyses.FunnelQuery(steps=["Buy", "Buy"], window="30d", where=[inside], **days)  # type: ignore[arg-type]
    answer = analyses.funnel(store, q, now=NOW)
    assert (
        answer["steps"]
        == reference.funnel(world, q, datetime(2024, 4, 1), datetime(2024, 6, 1))["steps"]
    )
    assert [s["users"] for s in answer["steps"]] == [2, 1]  # u2 bought again after 37 days
    r = analyses.RetentionQuery(start_event="Buy", return_event="Buy", where=[outside], **days)  # type: ignore[arg-type]
    assert sum(c["users"] for c in analyses.retention(store, r, now=NOW)["cohorts"]) == 2  # u3, d1
    with pytest.raises(NotFoundError, match="no cohort named 'nobody'"):
        buys({"kind": "cohort", "name": "nobody"})


def test_behaviour_text() -> None:
    assert parse_behaviour("Purchase Completed>=2 in 30d").model_dump() == {
        "did": True, "event_type": "Purchase Completed", "times": 2, "days": 30,
    }  # fmt: skip
    assert parse_behaviour("Churned in 7d", did=False).label() == "did not Churned >= 1 in 7d"
    with pytest.raises(ValueError, match="not understood"):
        parse_behaviour(">=2")
