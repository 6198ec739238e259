"""Analyses on every store: the store suite's ``store`` fixture (duckdb and chdb), with
profiles applied as a sync would and events appended as ingestion does."""

from __future__ import annotations

from typing import Any

from profilesync.events.projects import create_project
from profilesync.store.protocol import Store
from tests.query.reference import Event, World
from tests.store.conftest import apply, backend, home, net, open_home, store  # noqa: F401
from tests.store.test_events import append


def load(target: Store, world: World, project: str = "web") -> None:
    """Store ``world``'s profiles (Title, Score) and events."""
    rows = {uid: (p.get("Title"), p.get("Score")) for uid, p in world.profiles.items()}
    apply(target, net(rows))
    created, _ = create_project(target, project)
    append(target, created.id, [e.row() for e in world.events])


def sync(
    target: Store,
    world: World,
    changes: dict[str, dict[str, Any]],
    deleted: tuple[str, ...] = (),
) -> None:
    """A later sync: ``changes`` (user -> new properties) and ``deleted`` users."""
    for uid, props in changes.items():
        world.profiles[uid] = props
    for uid in deleted:
        world.profiles.pop(uid, None)
    rows = {
        uid: (world.profiles[uid].get("Title"), world.profiles[uid].get("Score")) for uid in changes
    }
    apply(target, net(rows, list(deleted)), position="2")


__all__ = ["Event", "World", "load", "sync"]
