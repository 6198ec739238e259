"""Moved: projects to :mod:`profilesync.events.projects`, the tables to the store
(``store.events``, :mod:`profilesync.store.duckdb.events`). Kept for one release."""

from __future__ import annotations

from typing import Any

from profilesync.events.projects import (
    Project,
    create_project,
    delete_project,
    get_project,
    key_hash,
    key_hint,
    list_projects,
    project_for_key,
    resolve_project,
    rotate_key,
)
from profilesync.events.validate import STANDARD_FIELDS

_hash, _hint = key_hash, key_hint

__all__ = [
    "STANDARD_FIELDS",
    "Project",
    "create_project",
    "delete_project",
    "ensure_schema",
    "get_project",
    "list_projects",
    "project_for_key",
    "resolve_project",
    "rotate_key",
    "store_id",
]


def ensure_schema(store: Any) -> Any:
    """The store's DuckDB connection: the events tables exist in every migrated file."""
    return store.con


def store_id(store: Any) -> str:
    """A random id made with the events tables: a file deleted and re-created gets a new one."""
    return str(store.events.store_id())
