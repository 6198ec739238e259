"""The figures ``/metrics`` shows, read from the store at scrape time.

Everything here is in the store, so it survives a restart: runs by status, rows and
operations per source, the sync durations, the time since each source's last success,
this month's quota and the events stored per project. One short read: a ``GROUP BY``
over the run history, this month's usage, and a count of events per project.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlglot import exp

from profilesync.app.home import Store
from profilesync.model import Source, now

#: upper bounds (seconds) of the sync duration histogram; +Inf is implied
DURATION_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)
#: the run statuses a run history holds; each source shows every one (0 when none)
RUN_STATUSES = ("success", "failed")
#: the row counts a run records, as the ``kind`` of ``profilesync_rows_total``
ROW_KINDS = ("inserted", "updated", "deleted", "rejected")


@dataclass
class SourceFigures:
    """One source's totals over its whole run history."""

    source: Source
    runs: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RUN_STATUSES, 0))
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ROW_KINDS, 0))
    operations: int = 0
    #: cumulative counts of finished runs per bound of :data:`DURATION_BUCKETS`
    within: list[int] = field(default_factory=lambda: [0] * len(DURATION_BUCKETS))
    timed: int = 0
    seconds: float = 0.0
    last_success: datetime | None = None
    #: None when the source never synced successfully
    seconds_since_last_success: float | None = None

    @property
    def name(self) -> str:
        return self.source.name


@dataclass
class Figures:
    sources: list[SourceFigures]
    quota_plan: str
    quota_used: int
    quota_limit: int
    #: project name -> events stored
    events: dict[str, int]
    #: project id -> name, to label what the server counts itself
    projects: dict[int, str]


def figures(store: Store, at: datetime | None = None) -> Figures:
    """The store's figures now (``at``: the time "seconds since" is measured to)."""
    at = at or now()
    by_name = {s.name: SourceFigures(s) for s in store.list_sources()}
    for row in store.run_summary(DURATION_BUCKETS):
        source = by_name.get(row["source"])
        if source is not None:
            _add(source, row, at)
    usage = store.usage()
    projects = {p.id: p.name for p in store.events.list_projects()}
    return Figures(
        sources=list(by_name.values()),
        quota_plan=str(usage["plan"]),
        quota_used=int(usage["used"]),
        quota_limit=int(usage["limit"]),
        events=_events_by_project(store, projects),
        projects=projects,
    )


def _add(source: SourceFigures, row: dict[str, Any], at: datetime) -> None:
    status = row["status"]
    source.runs[status] = source.runs.get(status, 0) + row["runs"]
    for kind in ROW_KINDS:
        source.rows[kind] += row[kind]
    source.operations += row["operations"]
    source.within = [a + b for a, b in zip(source.within, row["within"], strict=True)]
    source.timed += row["timed"]
    source.seconds += row["seconds"]
    last = row["last_finished"]
    if status == "success" and last is not None:
        source.last_success = last
        source.seconds_since_last_success = max((at - last).total_seconds(), 0.0)


def _events_by_project(store: Store, projects: dict[int, str]) -> dict[str, int]:
    """Events stored per project: one ``GROUP BY`` on the project column, which both
    stores answer from their columnar files without reading the events' contents."""
    query = (
        exp.select("project_id", exp.Count(this=exp.Star()))
        .from_(store.events_relation)
        .group_by("project_id")
    )
    counts = {int(pid): int(n) for pid, n in store.read(query)}
    return {name: counts.get(pid, 0) for pid, name in sorted(projects.items())}
