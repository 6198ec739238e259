"""Project use cases: each project is a stream of events with its own API key."""

from __future__ import annotations

from datetime import datetime

from sqlglot import exp

from profilesync.app.home import Store
from profilesync.events import projects
from profilesync.events.projects import Project
from profilesync.store.protocol import Reader

__all__ = [
    "Project",
    "create_project",
    "delete_project",
    "event_counts",
    "get_project",
    "list_projects",
    "project_for_key",
    "rotate_key",
]


def create_project(store: Store, name: str) -> tuple[Project, str]:
    """A new project and its API key (shown once: only its hash is kept)."""
    return projects.create_project(store, name)


def list_projects(store: Store) -> list[Project]:
    return projects.list_projects(store)


def get_project(store: Store, name: str) -> Project:
    return projects.get_project(store, name)


def project_for_key(store: Store, api_key: str) -> Project | None:
    """The project an ingestion request's ``api_key`` belongs to, if any."""
    return projects.project_for_key(store, api_key)


def rotate_key(store: Store, name: str) -> tuple[Project, str]:
    """A new API key for ``name``; senders using the old one are refused from now on."""
    return projects.rotate_key(store, name)


def delete_project(store: Store, name: str) -> int:
    """Delete a project with every event it holds; returns how many events went."""
    return projects.delete_project(store, name)


def event_counts(store: Store, reader: Reader | None = None) -> dict[int, tuple[int, datetime]]:
    """Per project id, its stored events and the last arrival, in one grouped scan.

    Pass a :func:`profilesync.app.events.reader` to scan without holding the store's lock;
    projects without events are absent.
    """
    query = (
        exp.select("project_id", "count(*)", "max(received_at)")
        .from_(exp.to_table(store.events_relation))
        .group_by("project_id")
    )
    rows = (reader or store).read(query)
    return {row[0]: (row[1], row[2]) for row in rows}
