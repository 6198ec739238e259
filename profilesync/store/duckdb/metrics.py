"""Run totals for monitoring in the catalog file (see profilesync.store.metrics)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from profilesync.store.duckdb.connected import Connected

_SUMS = ("inserted", "updated", "deleted", "rejected", "operations")


class MetricsTables(Connected):
    """The :class:`~profilesync.store.metrics.Metrics` part of the catalog."""

    def run_summary(self, bounds: Sequence[float]) -> list[dict[str, Any]]:
        # runs of a deleted source keep their name: joined by id, a source deleted and
        # added again under its old name starts from zero. Durations from epoch_us: a
        # TIMESTAMPTZ difference goes through an INTERVAL, ten times slower on 10k runs
        within = "".join(f", count(*) FILTER (WHERE seconds <= {float(b)!r})" for b in bounds)
        sums = "".join(f", coalesce(sum({c}), 0)" for c in _SUMS)
        rows = self.con.execute(
            f"""
            WITH timed AS (
                SELECT s.name AS source, r.status, r.finished_at,
                       {", ".join(f"r.{c}" for c in _SUMS)},
                       (epoch_us(r.finished_at) - epoch_us(r.started_at)) / 1e6 AS seconds
                FROM runs r JOIN sources s ON r.source_id = s.id)
            SELECT source, status, count(*){sums}, count(seconds),
                   coalesce(sum(seconds), 0), max(finished_at){within}
            FROM timed GROUP BY source, status ORDER BY source, status
            """
        ).fetchall()
        return [_row(r, len(bounds)) for r in rows]


def _row(row: tuple[Any, ...], buckets: int) -> dict[str, Any]:
    source, status, runs, *rest = row
    sums, (timed, seconds, last), within = rest[:5], rest[5:8], rest[8 : 8 + buckets]
    return {
        "source": source,
        "status": status,
        "runs": int(runs),
        **{name: int(value) for name, value in zip(_SUMS, sums, strict=True)},
        "timed": int(timed),
        "seconds": float(seconds),
        "within": [int(n) for n in within],
        "last_finished": last,
    }
