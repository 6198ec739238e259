"""Fault injection for the crash-safety tests.

``PROFILESYNC_FAULT=<point>`` kills the process (SIGKILL: no cleanup, no rollback) when
it reaches ``fault(<point>)``. The points sit inside the transactions that must be all or
nothing: ``after_read``, ``apply``, ``mid_apply`` and ``before_commit`` in a sync,
``import_chunk`` and ``import_before_commit`` in an events import, ``edit_mid`` (a source
edit's stored columns changed, its catalog not yet saved) and ``edit_before_commit``
(everything written, not committed) in a source edit.
"""

from __future__ import annotations

import os

ENV = "PROFILESYNC_FAULT"


def fault(point: str) -> None:
    """Kill this process here when ``PROFILESYNC_FAULT`` names ``point``; else nothing."""
    if os.environ.get(ENV) == point:
        crash(point)


def crash(point: str) -> None:
    """The crash itself; in-process tests replace it with one that raises."""
    os.kill(os.getpid(), 9)
