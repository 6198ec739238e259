"""What a segmentation asks, validated before anything is compiled.

A segmentation counts events (or unique users, or sums a numeric event property) per
time bucket for some event types, filtered and grouped by properties of five kinds:

- ``profile``: the user's *current* synced value, for every event, past ones included
  (events are joined to the per-source profile tables at query time);
- ``user``: the ``user_properties`` sent with the event (the value at event time);
- ``event``: the event's ``event_properties``;
- ``field``: a standard top-level field of the event (``platform``, ``country``, ...);
- ``group``: the event's group of a type (``group:company`` is ``groups.company``, the
  name of the company the event was sent for; a list of names is compared as its JSON text);
- ``cohort`` (filters only): the user is (``is``) or is not (``is not``) a member of the
  saved cohort of that name now (see :mod:`profilesync.query.cohorts`).

These models are the logical plan: the CLI, the REST API and the web UI all build one,
and :mod:`profilesync.query.compiler` turns it into a sqlglot expression.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

Kind = Literal["profile", "user", "event", "field", "group", "cohort"]
Metric = Literal["totals", "uniques", "sum", "avg"]
Interval = Literal["hour", "day", "week", "month"]
Op = Literal[
    "is", "is not", "contains", "does not contain", "<", "<=", ">", ">=", "is set", "is not set"
]
KINDS: tuple[str, ...] = ("profile", "user", "event", "field", "group", "cohort")
OPS: tuple[str, ...] = Op.__args__  # type: ignore[attr-defined]
NONE_LABEL = "(none)"
OTHER_LABEL = "other"


class PropertyRef(BaseModel):
    """A property to filter or group by: its kind and name."""

    kind: Kind = Field(
        description=(
            "profile (current synced value), user (at event time), event, field, "
            "group (the event's group name of that type), cohort (filters: membership)"
        )
    )
    name: str = Field(min_length=1)

    @classmethod
    def parse(cls, text: str, profile_names: set[str] | None = None) -> PropertyRef:
        """``"profile:Plan"``; a bare name is a profile property if one has that name, else an event property."""
        kind, sep, name = text.partition(":")
        if sep and kind in KINDS:
            return cls(kind=kind, name=name)  # type: ignore[arg-type]
        guess = "profile" if profile_names and text in profile_names else "event"
        return cls(kind=guess, name=text)  # type: ignore[arg-type]

    def label(self) -> str:
        return f"{self.kind}:{self.name}"


class Filter(PropertyRef):
    """``kind:name op values``; ``is`` with several values means any of them."""

    op: Op = "is"
    values: list[str | int | float | bool] = Field(default_factory=list)

    @model_validator(mode="after")
    def _values_needed(self) -> Filter:
        if self.kind == "cohort":
            if self.op not in ("is", "is not"):
                raise ValueError(f"filter on {self.label()}: a cohort takes 'is' or 'is not'")
            return self
        if self.op not in ("is set", "is not set") and not self.values:
            raise ValueError(f"filter on {self.label()} with {self.op!r} needs a value")
        return self


class SegmentationQuery(BaseModel):
    """A segmentation: metric of some event types over time, filtered and grouped."""

    events: list[str] = Field(min_length=1, description="event types, e.g. ['Purchase']")
    metric: Metric = "totals"
    property: PropertyRef | None = Field(
        default=None, description="the numeric event property (or field) summed or averaged"
    )
    interval: Interval = "day"
    start: datetime | date | None = Field(
        default=None, description="first day (UTC); default: a span back"
    )
    end: datetime | date | None = Field(
        default=None, description="last day, inclusive (UTC); default today"
    )
    filters: list[Filter] = Field(default_factory=list)
    group_by: PropertyRef | None = None
    limit: int = Field(10, ge=1, le=100, description="groups shown; the rest become 'other'")
    project: str | None = Field(default=None, description="project name; default every project")

    @field_validator("start", "end", mode="before")
    @classmethod
    def _day(cls, value: Any) -> Any:
        """``"2024-05-01"`` is a whole day (an inclusive ``end`` covers it all)."""
        if isinstance(value, str) and len(value) == 10:
            try:
                return date.fromisoformat(value)
            except ValueError:
                return value
        return value

    @field_validator("events")
    @classmethod
    def _no_blank(cls, events: list[str]) -> list[str]:
        if any(not e for e in events):
            raise ValueError("event types must not be empty")
        return list(dict.fromkeys(events))

    @model_validator(mode="after")
    def _metric_property(self) -> SegmentationQuery:
        if self.metric in ("sum", "avg"):
            if self.property is None:
                raise ValueError(f"metric {self.metric!r} needs a property, e.g. event:amount")
            if self.property.kind not in ("event", "field"):
                raise ValueError(f"metric {self.metric!r} sums an event property or field")
        return self
