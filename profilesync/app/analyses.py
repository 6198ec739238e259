"""Funnels, retention and saved cohorts: what the CLI, the REST API and the web UI call.

Queries are the models of :mod:`profilesync.query.analyses` (re-exported here, with
:func:`parse_behaviour`), so a shell imports nothing else. Answers are JSON documents:

- :func:`funnel`: ``{"steps": [{"event_type", "users", "conversion" (from step 1),
  "step_conversion" (from the previous step), "drop_off" (users lost since the previous
  step), "median_seconds_to_convert" (from step 1)}, ...], "window", "order", "start",
  "end", "query"}``, and with a ``group_by`` ``"groups": [{"label", "group", "other",
  "steps"}, ...]`` (largest first, ``other`` last);
- :func:`retention`: ``{"interval", "mode", "cohorts": [{"start" (the day or Monday),
  "users", "returned": [n0, n1, ..., nN], "rates": [...]}, ...], "start", "end",
  "query"}``, with ``"groups": [{"label", "group", "other", "cohorts"}, ...]`` when grouped;
- cohorts: :func:`cohort_add`, :func:`cohort_update`, :func:`cohort_list`,
  :func:`cohort_show` (size and a sample, computed now), :func:`cohort_export` (every
  member id), :func:`cohort_delete`.

``now`` (tests, replays) is the day a range without an end ends on and the clock of
cohorts' "in the last N days"; by default the current time.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from profilesync.app.home import Store
from profilesync.errors import ConfigurationError
from profilesync.query import funnel as funnels
from profilesync.query import members
from profilesync.query import retention as retentions
from profilesync.query.analyses import (
    Behaviour,
    CohortDefinition,
    FunnelQuery,
    RetentionQuery,
    Step,
    parse_behaviour,
)
from profilesync.query.relations import load_catalog

__all__ = [
    "Behaviour",
    "CohortDefinition",
    "FunnelQuery",
    "RetentionQuery",
    "Step",
    "cohort_add",
    "cohort_delete",
    "cohort_export",
    "cohort_list",
    "cohort_show",
    "cohort_update",
    "funnel",
    "parse_behaviour",
    "retention",
]


def funnel(store: Store, query: FunnelQuery, now: datetime | None = None) -> dict[str, Any]:
    """Users reaching each step of ``query``, overall and per group."""
    return funnels.funnel(store, query, now)


def retention(store: Store, query: RetentionQuery, now: datetime | None = None) -> dict[str, Any]:
    """Users returning in each interval after their start, per cohort of start."""
    return retentions.retention(store, query, now)


def _checked(store: Store, definition: CohortDefinition | dict[str, Any]) -> dict[str, Any]:
    """The definition as stored, once its property names are known to resolve."""
    cohort = CohortDefinition.model_validate(definition)
    members.compile_members(cohort, load_catalog(store), store.dialect)
    return cohort.model_dump(mode="json")


def cohort_add(
    store: Store, name: str, definition: CohortDefinition | dict[str, Any]
) -> dict[str, Any]:
    """Save a cohort (a name in use is refused); the saved cohort."""
    if not name.strip():
        raise ConfigurationError("a cohort needs a name, e.g. `cohort add Whales ...`")
    return store.add_cohort(name.strip(), _checked(store, definition)).to_json()


def cohort_update(
    store: Store, name: str, definition: CohortDefinition | dict[str, Any]
) -> dict[str, Any]:
    """Replace a saved cohort's definition."""
    return store.update_cohort(name, _checked(store, definition)).to_json()


def cohort_list(store: Store) -> list[dict[str, Any]]:
    """Every saved cohort (definitions only: sizes cost a query each, see :func:`cohort_show`)."""
    return [c.to_json() for c in store.list_cohorts()]


def cohort_show(
    store: Store, name: str, sample: int = 20, now: datetime | None = None
) -> dict[str, Any]:
    """A saved cohort with its size now and the first ``sample`` member ids."""
    cohort = store.get_cohort(name)
    definition = CohortDefinition.model_validate(cohort.definition)
    size, ids = members.size_and_sample(store, definition, sample, now)
    return {**cohort.to_json(), "size": size, "sample": ids}


def cohort_export(store: Store, name: str, now: datetime | None = None) -> Iterator[str]:
    """Every member id of a saved cohort now, in order."""
    definition = CohortDefinition.model_validate(store.get_cohort(name).definition)
    return members.member_ids(store, definition, now)


def cohort_delete(store: Store, name: str) -> None:
    store.delete_cohort(name)
