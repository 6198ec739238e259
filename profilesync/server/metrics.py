"""``GET /metrics``: the server's figures in the Prometheus text format, for any API token.

The figures are read from the store when Prometheus scrapes (:mod:`profilesync.app.metrics`),
so they survive restarts and need no thread of their own. Only the events deduplicated at
ingestion are counted by this process (:func:`count_deduplicated`): they are never stored,
so that counter starts from zero with the server. The process's own CPU, memory and file
descriptors (``process_*``) come with ``prometheus_client``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from profilesync.app import metrics as app_metrics
from profilesync.server.deps import get_scheduler, require_token, store_session

router = APIRouter()

#: the states ``profilesync_source_state`` shows for every source (the scheduler's)
SOURCE_STATES = ("active", "queued", "running", "retrying", "paused", "stopped")


@router.get(
    "/metrics",
    tags=["server"],
    summary="Prometheus metrics (text exposition format)",
    description="Syncs by status, rows and operations per source, sync durations, time "
    "since each source's last success, this month's quota and events per project. Any API "
    "token may scrape.",
    response_class=Response,
)
def metrics(request: Request, _: str = Depends(require_token)) -> Response:
    scheduler = get_scheduler(request)
    with store_session(request) as store:
        figures = app_metrics.figures(store)
        states = {s.name: scheduler.status(s.source)["state"] for s in figures.sources}
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(figures, states, deduplicated_of(request).counts()))
    ProcessCollector(registry=registry)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


class StoreCollector(Collector):
    """The metric families of one scrape, from figures already read."""

    def __init__(
        self, figures: app_metrics.Figures, states: dict[str, str], deduplicated: dict[int, int]
    ) -> None:
        self.figures, self.states, self.deduplicated = figures, states, deduplicated

    def collect(self) -> Iterator[Metric]:
        yield from self._runs()
        yield from self._sources()
        yield from self._quota()
        yield from self._events()

    def _runs(self) -> Iterator[Metric]:
        syncs = CounterMetricFamily(
            "profilesync_syncs", "Sync runs by final status.", labels=["source", "status"]
        )
        rows = CounterMetricFamily(
            "profilesync_rows",
            "Rows of sync runs: inserted, updated, deleted (applied) and rejected.",
            labels=["source", "kind"],
        )
        operations = CounterMetricFamily(
            "profilesync_operations", "Metered operations applied.", labels=["source"]
        )
        duration = HistogramMetricFamily(
            "profilesync_sync_duration_seconds",
            "Duration of finished sync runs, successful or failed.",
            labels=["source"],
        )
        for source in self.figures.sources:
            for status, count in source.runs.items():
                syncs.add_metric([source.name, status], count)
            for kind, count in source.rows.items():
                rows.add_metric([source.name, kind], count)
            operations.add_metric([source.name], source.operations)
            bounds = [floatToGoString(b) for b in app_metrics.DURATION_BUCKETS]
            buckets = [*zip(bounds, source.within, strict=True), ("+Inf", source.timed)]
            duration.add_metric([source.name], buckets, source.seconds)
        yield from (syncs, rows, operations, duration)

    def _sources(self) -> Iterator[Metric]:
        since = GaugeMetricFamily(
            "profilesync_seconds_since_last_success",
            "Seconds since the source's last successful sync (no sample before its first).",
            labels=["source"],
        )
        state = GaugeMetricFamily(
            "profilesync_source_state",
            "1 for the source's scheduling state now, 0 for the others.",
            labels=["source", "state"],
        )
        for source in self.figures.sources:
            if source.seconds_since_last_success is not None:
                since.add_metric([source.name], source.seconds_since_last_success)
            now = self.states.get(source.name)
            for name in SOURCE_STATES:
                state.add_metric([source.name, name], 1.0 if name == now else 0.0)
        yield from (since, state)

    def _quota(self) -> Iterator[Metric]:
        used = GaugeMetricFamily(
            "profilesync_quota_operations_used", "Operations metered this calendar month (UTC)."
        )
        used.add_metric([], self.figures.quota_used)
        limit = GaugeMetricFamily(
            "profilesync_quota_operations_limit", "The plan's monthly operation limit."
        )
        limit.add_metric([], self.figures.quota_limit)
        yield from (used, limit)

    def _events(self) -> Iterator[Metric]:
        ingested = CounterMetricFamily(
            "profilesync_events_ingested",
            "Events stored, per project.",
            labels=["project"],
        )
        for project, count in self.figures.events.items():
            ingested.add_metric([project], count)
        deduplicated = CounterMetricFamily(
            "profilesync_events_deduplicated",
            "Events ignored as duplicates (device_id and insert_id seen in the last 7 days), "
            "counted since this server started.",
            labels=["project"],
        )
        for pid, project in sorted(self.figures.projects.items()):
            deduplicated.add_metric([project], self.deduplicated.get(pid, 0))
        yield from (ingested, deduplicated)


class Deduplicated:
    """Events ignored as duplicates, per project id, since the app started."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[int, int] = {}

    def add(self, project_id: int, count: int) -> None:
        with self._lock:
            self._counts[project_id] = self._counts.get(project_id, 0) + count

    def counts(self) -> dict[int, int]:
        with self._lock:
            return dict(self._counts)


_made = threading.Lock()


def deduplicated_of(request: Request) -> Deduplicated:
    """The app's counter (made on first use)."""
    with _made:
        counter: Deduplicated | None = getattr(request.app.state, "deduplicated", None)
        if counter is None:
            counter = request.app.state.deduplicated = Deduplicated()
        return counter


def count_deduplicated(request: Request, project_id: int | None, answer: dict[str, Any]) -> None:
    """Count the duplicates an ingestion ``answer`` reports for ``project_id``."""
    count = int(answer.get("events_deduplicated") or 0)
    if project_id is not None and count:
        deduplicated_of(request).add(project_id, count)
