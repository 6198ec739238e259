"""Questions about events, answered with the profiles as they are now.

A request (:mod:`~profilesync.query.model`) is compiled once into a sqlglot expression
over logical relations (:mod:`~profilesync.query.compiler`,
:mod:`~profilesync.query.relations`), run through the store, which renders it in its own
dialect, and shaped into series (:mod:`~profilesync.query.results`).
:mod:`~profilesync.query.lookup` answers a user's page.

    from profilesync.query import SegmentationQuery, segmentation

    answer = segmentation(store, SegmentationQuery(events=["Purchase"], interval="week"))
"""

from profilesync.query.lookup import user_lookup
from profilesync.query.model import (
    KINDS,
    NONE_LABEL,
    OPS,
    OTHER_LABEL,
    Filter,
    PropertyRef,
    SegmentationQuery,
)
from profilesync.query.runner import Plan, known, plan, run, segmentation, shape, time_range

__all__ = [
    "KINDS",
    "NONE_LABEL",
    "OPS",
    "OTHER_LABEL",
    "Filter",
    "Plan",
    "PropertyRef",
    "SegmentationQuery",
    "known",
    "plan",
    "run",
    "segmentation",
    "shape",
    "time_range",
    "user_lookup",
]
