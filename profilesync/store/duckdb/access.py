"""Users, API tokens and the audit log in the catalog file (see profilesync.store.access)."""

from __future__ import annotations

from profilesync.store.duckdb.connected import Connected


class AccessTables(Connected):
    """The :class:`~profilesync.store.access.Access` part of the catalog."""
