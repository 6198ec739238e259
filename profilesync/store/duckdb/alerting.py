"""Alert channels, deliveries and state in the catalog file (see profilesync.store.alerting)."""

from __future__ import annotations

from profilesync.store.duckdb.connected import Connected


class AlertTables(Connected):
    """The :class:`~profilesync.store.alerting.Alerting` part of the catalog."""
