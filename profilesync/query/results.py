"""Rows of a compiled segmentation shaped into the answer: buckets and series, best first.

Rows are ``(bucket, ev, grp, named, rank, n, nv, sv)``: a bucket of None is a unique-users
total over the whole range; ``named`` False is the ``other`` group; ``n`` counts events
(or users), ``nv`` and ``sv`` are the count and sum of the values behind sums and averages,
kept as parts until the end so every total is exact.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from profilesync.model import json_value
from profilesync.query.model import NONE_LABEL, OTHER_LABEL, SegmentationQuery

Row = tuple[Any, ...]


def group_label(grp: Any, named: Any) -> str:
    """How a group is labelled in every analysis: its value as JSON shows it, ``(none)`` for
    no value, ``other`` for the groups past the limit (``named`` false)."""
    if not named:
        return OTHER_LABEL
    value = json_value(grp)
    return NONE_LABEL if value is None else str(value)


def shape(
    query: SegmentationQuery,
    start: datetime,
    end: datetime,
    buckets: list[datetime],
    rows: Iterable[Row],
) -> dict[str, Any]:
    """The JSON answer: buckets, and one series per (event type, group), best first."""
    index = {b: i for i, b in enumerate(buckets)}
    series: dict[tuple[str, Any, bool], Series] = {}
    for bucket, ev, grp, named, rank, n, nv, sv in rows:
        key = (ev if len(query.events) > 1 else "", grp, bool(named))
        s = series.setdefault(key, Series(query, key, int(rank), len(buckets)))
        if bucket is None:  # a unique-users total over the whole range
            s.total = int(n)
        else:
            s.add(index[bucket], int(n), int(nv or 0), float(sv or 0))
    if not query.group_by:  # an ungrouped series shows, as zeros, even when nothing matched
        for ev in query.events if len(query.events) > 1 else [""]:
            key = (ev, None, True)
            if key not in series:
                series[key] = Series(query, key, 1, len(buckets))
                series[key].total = 0 if query.metric == "uniques" else None
    ordered = sorted(series.values(), key=lambda s: (s.rank, s.event or ""))
    return {
        "query": query.model_dump(mode="json"),
        "metric": query.metric,
        "interval": query.interval,
        "start": json_value(start),
        "end": json_value(end),
        "buckets": [json_value(b) for b in buckets],
        "series": [s.to_json() for s in ordered],
    }


class Series:
    """One line of the chart; sums and averages are kept as parts until the end."""

    def __init__(
        self, q: SegmentationQuery, key: tuple[str, Any, bool], rank: int, size: int
    ) -> None:
        ev, grp, named = key
        self.metric = q.metric
        self.event = ev or (q.events[0] if len(q.events) == 1 else None)
        self.group = json_value(grp) if named else None
        self.other = not named
        self.rank = rank if named else 10**9
        if not q.group_by:
            self.label = ev or q.events[0]
        else:
            label = group_label(grp, named)
            self.label = f"{ev}: {label}" if ev else label
        self.parts: list[tuple[int, int, float]] = [(0, 0, 0.0)] * size
        self.total: int | float | None = None

    def add(self, at: int, n: int, nv: int, sv: float) -> None:
        self.parts[at] = (n, nv, sv)

    def to_json(self) -> dict[str, Any]:
        values = [metric_value(self.metric, *part) for part in self.parts]
        if self.metric != "uniques":
            self.total = metric_value(
                self.metric,
                sum(p[0] for p in self.parts),
                sum(p[1] for p in self.parts),
                sum(p[2] for p in self.parts),
            )
        return {
            "label": self.label,
            "event": self.event,
            "group": self.group,
            "other": self.other,
            "total": self.total,
            "values": values,
        }


def metric_value(metric: str, n: int, nv: int, sv: float) -> int | float | None:
    """The value of one point; a sum past a double's range is null (JSON has no Infinity)."""
    if metric in ("totals", "uniques"):
        return n
    value = sv if metric == "sum" else sv / nv if nv else None
    return value if value is None or math.isfinite(value) else None
