"""Profile use cases: one profile, and every profile for export."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from profilesync.app.home import Store


def get_profile(store: Store, user_id: str, *, detail: bool = False) -> dict[str, Any]:
    """A user's current properties; ``detail`` adds each one's source and sync time."""
    return store.get_profile(user_id, detail=detail)


def export_profiles(store: Store) -> Iterator[dict[str, Any]]:
    """Every profile, streamed in batches."""
    return store.export_profiles()
