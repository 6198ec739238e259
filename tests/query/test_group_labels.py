"""A group is labelled the same in a segmentation, a funnel and a retention table, also
when the grouping property holds numbers rather than text."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from profilesync.events.query import segmentation
from profilesync.query.analyses import FunnelQuery, RetentionQuery
from profilesync.query.funnel import funnel
from profilesync.query.model import SegmentationQuery
from profilesync.query.retention import retention
from profilesync.store.protocol import Store
from tests.query.conftest import load
from tests.query.reference import Event, World

RANGE = {"start": "2024-05-01", "end": "2024-05-07"}
BY_SCORE = {"kind": "profile", "name": "Score"}


def test_a_numeric_property_labels_its_groups_alike_in_every_analysis(store: Store) -> None:
    events = [
        e
        for uid in ("u1", "u2", "u3", "u4")
        for e in (
            Event("View", uid, datetime(2024, 5, 1, 9)),
            Event("Buy", uid, datetime(2024, 5, 2, 9)),
        )
    ]
    # u1 and u2 share a score, u3 has another, u4 has no profile
    profiles: dict[str, dict[str, Any]] = {
        "u1": {"Title": "A", "Score": 1.5},
        "u2": {"Title": "B", "Score": 1.5},
        "u3": {"Title": "C", "Score": 2.0},
    }
    load(store, World(events, profiles))

    seg = segmentation(store, SegmentationQuery(events=["View"], group_by=BY_SCORE, **RANGE))
    fun = funnel(store, FunnelQuery(steps=["View", "Buy"], group_by=BY_SCORE, **RANGE))
    ret = retention(
        store,
        RetentionQuery(start_event="View", return_event="Buy", group_by=BY_SCORE, **RANGE),
    )

    wanted = ["(none)", "1.5", "2.0"]
    assert sorted(s["label"] for s in seg["series"]) == wanted
    assert sorted(g["label"] for g in fun["groups"]) == wanted
    assert sorted(g["label"] for g in ret["groups"]) == wanted
