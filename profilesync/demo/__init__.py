"""``profilesync demo``: a small warehouse (Delta tables, or a throwaway PostgreSQL) synced,
changed, synced again, with events to segment by profile.

:mod:`~profilesync.demo.delta` and :mod:`~profilesync.demo.postgres` build and run the
warehouse demos; :mod:`~profilesync.demo.events` adds the events. The names below were
imported from ``profilesync.demo`` when it was one module and stay for one release.
"""

from __future__ import annotations

from profilesync.demo.common import cli_command
from profilesync.demo.delta import (
    DMAS,
    SCORES_QUERY,
    SENIORITY,
    TITLES,
    build_warehouse,
    change_warehouse,
    print_diff,
    print_rejected,
    run_demo,
    sync_all,
    users_mapping,
)

__all__ = [
    "DMAS",
    "SCORES_QUERY",
    "SENIORITY",
    "TITLES",
    "build_warehouse",
    "change_warehouse",
    "cli_command",
    "print_diff",
    "print_rejected",
    "run_demo",
    "sync_all",
    "users_mapping",
]
