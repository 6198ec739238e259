"""The resync mark: a catalog setting that makes a source's next sync, whoever starts it,
a resync (it diffs the warehouse against the store and meters only real differences).

An edit that needs a back-fill sets it; the sync that ran as the resync clears it. The
store sets it inside the transaction that saves the edit, so both land or neither does.
"""

from __future__ import annotations

import json
from typing import Any

from profilesync.model import Source, now
from profilesync.store.protocol import Catalog

#: the setting, keyed by source id: ids are never reused, so a deleted source's mark is inert
RESYNC_PENDING = "resync_pending.{}"

__all__ = ["RESYNC_PENDING", "clear_resync", "mark_resync", "pending_resync"]


def mark_resync(store: Catalog, source: Source, reasons: list[str]) -> None:
    """Make the next sync of ``source`` a resync, saying why (shown by ``source show``);
    the reasons of a mark still pending are kept."""
    earlier = (pending_resync(store, source) or {}).get("reasons", [])
    mark = {
        "reasons": [r for r in earlier if r not in reasons] + list(reasons),
        "at": now().isoformat(),
    }
    store.set_setting(RESYNC_PENDING.format(source.id), json.dumps(mark))


def pending_resync(store: Catalog, source: Source) -> dict[str, Any] | None:
    """``{"reasons": [...], "at": ...}`` when the next sync of ``source`` runs as a resync."""
    raw = store.get_setting(RESYNC_PENDING.format(source.id))
    return json.loads(raw) if raw else None


def clear_resync(store: Catalog, source: Source, seen: dict[str, Any]) -> None:
    """The resync asked for by ``seen`` is done; a mark set meanwhile (another edit) stays."""
    if pending_resync(store, source) == seen:
        store.set_setting(RESYNC_PENDING.format(source.id), None)
