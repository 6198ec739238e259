"""Events and projects in the store file, next to the profiles they are joined with.

``events`` is append-only and kept in arrival order, so its ``time`` and ``batch_id``
zone maps prune range scans. Event and user properties stay JSON (their keys differ per
event type); the standard top-level fields of the HTTP V2 format get typed columns. A
project's API key is stored as a SHA-256 hash: it is shown once, when made.
"""

from __future__ import annotations

import hashlib
import secrets
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb

from profilesync.errors import ConfigurationError, NotFoundError
from profilesync.store.duckdb import DuckDBStore

#: top-level fields of an HTTP V2 event kept in their own column, with their SQL type
STANDARD_FIELDS: dict[str, str] = {
    "session_id": "BIGINT",
    "app_version": "VARCHAR",
    "platform": "VARCHAR",
    "os_name": "VARCHAR",
    "device_model": "VARCHAR",
    "country": "VARCHAR",
    "region": "VARCHAR",
    "city": "VARCHAR",
    "language": "VARCHAR",
    "ip": "VARCHAR",
    "revenue": "DOUBLE",
}

_SCHEMA = f"""
CREATE SEQUENCE IF NOT EXISTS project_ids START 1;
CREATE SEQUENCE IF NOT EXISTS event_batches START 1;
CREATE TABLE IF NOT EXISTS projects (
    id BIGINT PRIMARY KEY, name VARCHAR NOT NULL UNIQUE, key_hash VARCHAR NOT NULL,
    key_hint VARCHAR NOT NULL, created_at TIMESTAMPTZ NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    project_id BIGINT NOT NULL, event_type VARCHAR NOT NULL, user_id VARCHAR,
    device_id VARCHAR, "time" TIMESTAMP NOT NULL, event_properties JSON,
    user_properties JSON, insert_id VARCHAR,
    {", ".join(f"{name} {sql_type}" for name, sql_type in STANDARD_FIELDS.items())},
    received_at TIMESTAMP NOT NULL, batch_id BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS event_catalog (
    project_id BIGINT NOT NULL, event_type VARCHAR NOT NULL, kind VARCHAR NOT NULL,
    name VARCHAR NOT NULL, first_seen TIMESTAMP NOT NULL);
"""

_ready: weakref.WeakKeyDictionary[DuckDBStore, str] = weakref.WeakKeyDictionary()


def ensure_schema(store: DuckDBStore) -> duckdb.DuckDBPyConnection:
    """Create the events tables once per store object; return its connection."""
    if store not in _ready:
        store.con.execute(_SCHEMA)
        store.con.execute(
            "INSERT OR IGNORE INTO settings VALUES ('events_store_id', ?)", [secrets.token_hex(8)]
        )
        _ready[store] = store.get_setting("events_store_id") or ""
    return store.con


def store_id(store: DuckDBStore) -> str:
    """A random id made with the events tables: a file deleted and re-created gets a new one."""
    ensure_schema(store)
    return _ready[store]


@dataclass(frozen=True)
class Project:
    """A stream of events with its own API key (the key itself is never stored)."""

    id: int
    name: str
    key_hint: str
    created_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        created = self.created_at.astimezone(UTC).isoformat() if self.created_at else None
        return {"name": self.name, "api_key_hint": self.key_hint, "created_at": created}


def _hash(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def _new_key() -> str:
    return secrets.token_hex(16)


def _hint(api_key: str) -> str:
    return api_key[:4] + "…" + api_key[-4:]


def create_project(store: DuckDBStore, name: str) -> tuple[Project, str]:
    """A new project and its API key (shown this once; only a hash is kept)."""
    con = ensure_schema(store)
    name = name.strip()
    if not name:
        raise ConfigurationError("a project needs a name, e.g. `web` or `ios`")
    if con.execute("SELECT 1 FROM projects WHERE name = ?", [name]).fetchone():
        raise ConfigurationError(f"project {name!r} exists already: pick another name")
    key = _new_key()
    row = con.execute("SELECT nextval('project_ids')").fetchone()
    assert row is not None
    con.execute(
        "INSERT INTO projects VALUES (?, ?, ?, ?, ?)",
        [row[0], name, _hash(key), _hint(key), datetime.now(UTC)],
    )
    return get_project(store, name), key


def list_projects(store: DuckDBStore) -> list[Project]:
    rows = (
        ensure_schema(store)
        .execute("SELECT id, name, key_hint, created_at FROM projects ORDER BY name")
        .fetchall()
    )
    return [Project(*r) for r in rows]


def get_project(store: DuckDBStore, name: str) -> Project:
    row = (
        ensure_schema(store)
        .execute("SELECT id, name, key_hint, created_at FROM projects WHERE name = ?", [name])
        .fetchone()
    )
    if row is None:
        raise NotFoundError(
            f"no project named {name!r}: see `profilesync events projects list`, "
            "or create it with `profilesync events projects add NAME`"
        )
    return Project(*row)


def project_for_key(store: DuckDBStore, api_key: str) -> Project | None:
    """The project whose API key this is, or None."""
    row = (
        ensure_schema(store)
        .execute(
            "SELECT id, name, key_hint, created_at FROM projects WHERE key_hash = ?",
            [_hash(api_key)],
        )
        .fetchone()
    )
    return Project(*row) if row else None


def rotate_key(store: DuckDBStore, name: str) -> tuple[Project, str]:
    """Replace a project's API key; senders using the old one are refused from now on."""
    project = get_project(store, name)
    key = _new_key()
    store.con.execute(
        "UPDATE projects SET key_hash = ?, key_hint = ? WHERE id = ?",
        [_hash(key), _hint(key), project.id],
    )
    return get_project(store, name), key


def delete_project(store: DuckDBStore, name: str) -> int:
    """Delete a project with all its events; returns how many events went."""
    project = get_project(store, name)
    with store.transaction() as con:
        row = con.execute(
            "SELECT count(*) FROM events WHERE project_id = ?", [project.id]
        ).fetchone()
        con.execute("DELETE FROM events WHERE project_id = ?", [project.id])
        con.execute("DELETE FROM event_catalog WHERE project_id = ?", [project.id])
        con.execute("DELETE FROM projects WHERE id = ?", [project.id])
    return int(row[0]) if row else 0


def resolve_project(store: DuckDBStore, name: str | None) -> Project:
    """The named project, or the only one there is."""
    if name:
        return get_project(store, name)
    projects = list_projects(store)
    if len(projects) == 1:
        return projects[0]
    if not projects:
        raise ConfigurationError(
            "there is no project yet: create one with `profilesync events projects add NAME`"
        )
    names = ", ".join(p.name for p in projects)
    raise ConfigurationError(f"several projects exist ({names}): name one with --project")
