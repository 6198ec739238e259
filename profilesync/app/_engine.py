"""The engine verbs the use cases need, imported from one place."""

from __future__ import annotations

from profilesync.engine.quota import PLANS, Quota
from profilesync.engine.sync import (
    failures,
    mark_resync,
    pending_resync,
    resolve_mapping,
    source_checks,
    source_lock,
    sync,
    test_mapping,
)

__all__ = [
    "PLANS",
    "Quota",
    "failures",
    "mark_resync",
    "pending_resync",
    "resolve_mapping",
    "source_checks",
    "source_lock",
    "sync",
    "test_mapping",
]
