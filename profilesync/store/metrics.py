"""The store's part for monitoring: the run history summed up per source, in one read.

``/metrics`` is scraped every few seconds for months, so the figures are aggregated by
the catalog (one ``GROUP BY`` over ``runs``) rather than read run by run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class Metrics(Protocol):
    """Run totals per source and status (implemented for every backend by the catalog)."""

    def run_summary(self, bounds: Sequence[float]) -> list[dict[str, Any]]:
        """One row per (source, status) of the sources that exist now: ``source``,
        ``status``, ``runs``, ``inserted``, ``updated``, ``deleted``, ``rejected``,
        ``operations``, ``timed`` (runs with a start and an end), ``seconds`` (their summed
        duration), ``within`` (for each of ``bounds``, the timed runs that took at most that
        many seconds) and ``last_finished`` (a ``datetime`` or None)."""
        ...
