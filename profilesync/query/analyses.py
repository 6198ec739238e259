"""What a funnel, a retention table and a cohort ask, validated before anything is compiled.

These models are the logical plans of the analyses (the CLI, the REST API and the web UI
build them; :mod:`~profilesync.query.funnel`, :mod:`~profilesync.query.retention` and
:mod:`~profilesync.query.cohorts` compile them into one sqlglot expression each).

Shared by funnels and retention:

- users are counted once: by ``user_id``, or by ``device_id`` for anonymous events, kept
  apart (a device is never a user whose id reads the same);
- ``where`` filters every event the analysis reads (``event``, ``user``, ``field``,
  ``group`` kinds), or the user: ``profile`` (the current synced value) and ``cohort``
  (membership now);
- ``group_by`` is the value at the user's *first* event of the analysis (a funnel's first
  step, retention's start event): for ``profile:`` that is the current value, for
  ``user:`` the ``user_properties`` sent with that event; when several such events share
  the first moment, the smallest value;
- ``start``/``end``: the range the first event must fall in, whole UTC days like
  segmentation (``end`` inclusive); later events may fall after ``end``.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from profilesync.query.model import Filter, PropertyRef

Order = Literal["this", "strict", "any"]
RetentionMode = Literal["on", "on_or_after"]
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_WINDOW = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
MAX_WINDOW = timedelta(days=366)
_EVENT_KINDS = ("event", "user", "field", "group", "profile")


def window_seconds(text: str) -> int:
    """``"7d"``, ``"1h"``, ``"30m"``, ``"2w"``, ``"90s"`` as seconds (at most 366 days)."""
    match = _WINDOW.match(text)
    if not match:
        raise ValueError(f"window {text!r} is not understood: write a number and s, m, h, d or w")
    seconds = int(match[1]) * _UNITS[match[2]]
    if not 0 < seconds <= MAX_WINDOW.total_seconds():
        raise ValueError(f"window {text!r} must be more than 0 and at most 366d")
    return seconds


def _day(value: Any) -> Any:
    """``"2024-05-01"`` is a whole day (an inclusive ``end`` covers it all)."""
    if isinstance(value, str) and len(value) == 10:
        try:
            return date.fromisoformat(value)
        except ValueError:
            return value
    return value


class Step(BaseModel):
    """One step: an event type, with optional conditions on the event."""

    event_type: str = Field(min_length=1)
    filters: list[Filter] = Field(default_factory=list)

    @field_validator("filters")
    @classmethod
    def _on_the_event(cls, filters: list[Filter]) -> list[Filter]:
        for f in filters:
            if f.kind not in _EVENT_KINDS:
                raise ValueError(f"a step filters its events: {f.label()} is not allowed there")
        return filters


class _Analysis(BaseModel):
    """What funnels and retention share: range, filters, grouping, project."""

    start: datetime | date | None = Field(
        default=None, description="first day the first event may fall on (UTC)"
    )
    end: datetime | date | None = Field(default=None, description="last day, inclusive (UTC)")
    where: list[Filter] = Field(default_factory=list)
    group_by: PropertyRef | None = None
    limit: int = Field(10, ge=1, le=100, description="groups shown; the rest become 'other'")
    project: str | None = Field(default=None, description="project name; default every project")

    @field_validator("start", "end", mode="before")
    @classmethod
    def _whole_day(cls, value: Any) -> Any:
        return _day(value)

    @field_validator("group_by")
    @classmethod
    def _groupable(cls, ref: PropertyRef | None) -> PropertyRef | None:
        if ref is not None and ref.kind == "cohort":
            raise ValueError("a cohort is a filter (where cohort:NAME), not a group")
        return ref


def _step(value: Any) -> Any:
    return {"event_type": value} if isinstance(value, str) else value


class FunnelQuery(_Analysis):
    """Ordered steps; who reached each within ``window`` of their first step.

    A user enters at their *first* event of step 1 in the range. Steps are then taken
    greedily, each at the earliest event that qualifies:

    - ``this`` (default): step k is the user's first step-k event after step k-1, other
      events in between allowed;
    - ``strict``: as ``this``, and between step k-1 and step k the user did no event of
      another step of the funnel;
    - ``any``: steps 2..n each at some time after step 1, in any order; step k is reached
      when steps 2..k all are.

    An event *after* another is later, or at the same moment and not itself a match of
    the previous step (so one event never counts for two consecutive steps, and events
    sent in one batch at one millisecond convert). Every step must fall within ``window``
    of step 1 (``t_k - t_1 <= window``).
    """

    steps: list[Step] = Field(min_length=2, max_length=20)
    window: str = Field("7d", description="conversion window from step 1: 90s, 30m, 1h, 7d, 2w")
    order: Order = "this"

    @field_validator("steps", mode="before")
    @classmethod
    def _event_types(cls, value: Any) -> Any:
        """A step may be given as its event type alone."""
        return [_step(s) for s in value] if isinstance(value, list) else value

    @field_validator("window")
    @classmethod
    def _window(cls, text: str) -> str:
        window_seconds(text)
        return text.strip()

    @property
    def window_seconds(self) -> int:
        return window_seconds(self.window)


class RetentionQuery(_Analysis):
    """Users by the interval of their first start event, and when they came back.

    A user's start is their first ``start_event`` in the range; their cohort is its UTC
    day (or Monday-based week). A return is a ``return_event`` after the start (same
    tie rule as funnels); its offset is the number of whole intervals between the start's
    interval and its own (0: the same day or week). ``on``: returned[k] counts users with
    a return at offset k; ``on_or_after``: with a return at offset k or any later.
    """

    start_event: Step
    return_event: Step
    interval: Literal["day", "week"] = "day"
    buckets: int = Field(7, ge=1, le=90, description="offsets after the start: 0..N")
    mode: RetentionMode = "on"

    @field_validator("start_event", "return_event", mode="before")
    @classmethod
    def _event_type(cls, value: Any) -> Any:
        return _step(value)

    @field_validator("mode", mode="before")
    @classmethod
    def _mode(cls, value: Any) -> Any:
        return value.replace("-", "_") if isinstance(value, str) else value


class Behaviour(BaseModel):
    """Did (or did not) do an event at least ``times`` times in the last ``days`` days."""

    did: bool = True
    event_type: str = Field(min_length=1)
    times: int = Field(1, ge=1)
    days: int = Field(30, ge=1, le=3660)

    def label(self) -> str:
        verb = "did" if self.did else "did not"
        return f"{verb} {self.event_type} >= {self.times} in {self.days}d"


class CohortDefinition(BaseModel):
    """Users meeting every condition: profile properties (current values) and behaviour.

    The users a cohort can hold are every ``user_id`` with a current profile or an event.
    Behaviour counts a user's events of the type in ``(now - days, now]``; "did not" is
    fewer than ``times`` (never, for 1). Membership is computed whenever the cohort is
    read, so a sync or new events change it.
    """

    where: list[Filter] = Field(default_factory=list)
    behaviour: list[Behaviour] = Field(default_factory=list)

    @field_validator("where")
    @classmethod
    def _profiles_only(cls, filters: list[Filter]) -> list[Filter]:
        for f in filters:
            if f.kind != "profile":
                raise ValueError(
                    f"a cohort's conditions are profile properties: {f.label()} is not one"
                )
        return filters

    @model_validator(mode="after")
    def _something(self) -> CohortDefinition:
        if not self.where and not self.behaviour:
            raise ValueError("a cohort needs a condition: a profile property or a behaviour")
        return self


_BEHAVIOUR = re.compile(
    r"^(?P<event>[^>\s].*?)\s*(?:>=\s*(?P<times>\d+))?\s*(?:\bin\s+(?P<days>\d+)\s*d)?\s*$"
)


def parse_behaviour(text: str, *, did: bool = True) -> Behaviour:
    """``"Purchase Completed>=2 in 30d"``, ``"Signup in 7d"``, ``"Churned"`` (once in 30
    days)."""
    match = _BEHAVIOUR.match(text.strip())
    if not match or not match["event"].strip():
        raise ValueError(
            f"behaviour {text!r} is not understood: write 'EVENT[>=N] [in Dd]', "
            "e.g. 'Purchase Completed>=2 in 30d'"
        )
    return Behaviour(
        did=did,
        event_type=match["event"].strip(),
        times=int(match["times"] or 1),
        days=int(match["days"] or 30),
    )
