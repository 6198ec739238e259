"""Projects: streams of events, each with its own API key.

A key is shown once, when it is made; the store keeps only its SHA-256 hash and a hint
(its first and last four characters), so a stolen store file holds no usable key.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Protocol

from profilesync.errors import ConfigurationError, NotFoundError, UiFix
from profilesync.store.protocol import Events, Project

__all__ = [
    "Project",
    "create_project",
    "delete_project",
    "get_project",
    "key_hash",
    "list_projects",
    "project_for_key",
    "resolve_project",
    "rotate_key",
]


class _HasEvents(Protocol):
    """Anything with an ``events`` part: a :class:`~profilesync.store.protocol.Store`."""

    @property
    def events(self) -> Events: ...


def key_hash(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def _new_key() -> str:
    return secrets.token_hex(16)


def key_hint(api_key: str) -> str:
    return api_key[:4] + "…" + api_key[-4:]


def create_project(store: _HasEvents, name: str) -> tuple[Project, str]:
    """A new project and its API key (shown this once; only a hash is kept)."""
    name = name.strip()
    if not name:
        raise ConfigurationError("a project needs a name, e.g. `web` or `ios`")
    if store.events.find_project(name):
        raise ConfigurationError(f"project {name!r} exists already: pick another name")
    key = _new_key()
    return store.events.add_project(name, key_hash(key), key_hint(key)), key


def list_projects(store: _HasEvents) -> list[Project]:
    return store.events.list_projects()


def get_project(store: _HasEvents, name: str) -> Project:
    project = store.events.find_project(name)
    if project is None:
        raise NotFoundError(
            f"no project named {name!r}: see `profilesync events projects list`, "
            "or create it with `profilesync events projects add NAME`",
            ui_fix=UiFix("See the projects, or create one", "/projects"),
        )
    return project


def project_for_key(store: _HasEvents, api_key: str) -> Project | None:
    """The project whose API key this is, or None."""
    return store.events.project_by_key_hash(key_hash(api_key))


def rotate_key(store: _HasEvents, name: str) -> tuple[Project, str]:
    """Replace a project's API key; senders using the old one are refused from now on."""
    project = get_project(store, name)
    key = _new_key()
    store.events.set_project_key(project.id, key_hash(key), key_hint(key))
    return get_project(store, name), key


def delete_project(store: _HasEvents, name: str) -> int:
    """Delete a project with all its events; returns how many events went."""
    return store.events.delete_project(get_project(store, name).id)


def resolve_project(store: _HasEvents, name: str | None) -> Project:
    """The named project, or the only one there is."""
    if name:
        return get_project(store, name)
    projects = list_projects(store)
    if len(projects) == 1:
        return projects[0]
    if not projects:
        raise ConfigurationError(
            "there is no project yet: create one with `profilesync events projects add NAME`",
            ui_fix=UiFix("Create a project", "/projects"),
        )
    names = ", ".join(p.name for p in projects)
    raise ConfigurationError(
        f"several projects exist ({names}): name one with --project",
        ui_fix="Choose a project",
    )
