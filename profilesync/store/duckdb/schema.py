"""The store file's tables and the migrations that bring an older file up to date.

``settings.schema_version`` names the last migration a file went through. Opening a
store reads it and runs the later migrations in order, in one transaction: a file is at
one version or the other, never in between. A file written by a newer profilesync is
refused (its tables may mean something this code does not know).

Migrations are history: once released, one is never edited; a change is a new one.
"""

from __future__ import annotations

from collections.abc import Callable

import duckdb

from profilesync.errors import ConfigurationError

_V1 = """
CREATE TABLE IF NOT EXISTS settings (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS connections (
    name VARCHAR PRIMARY KEY, kind VARCHAR NOT NULL, config JSON NOT NULL,
    created_at TIMESTAMPTZ NOT NULL);
CREATE TABLE IF NOT EXISTS sources (
    id BIGINT PRIMARY KEY, name VARCHAR NOT NULL UNIQUE, connection VARCHAR NOT NULL,
    mapping JSON NOT NULL, strategy VARCHAR NOT NULL, frequency_seconds BIGINT NOT NULL,
    data_type VARCHAR NOT NULL, paused BOOLEAN NOT NULL, checkpoint JSON,
    created_at TIMESTAMPTZ NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id BIGINT PRIMARY KEY, source_id BIGINT, source VARCHAR NOT NULL, mode VARCHAR,
    status VARCHAR NOT NULL, inserted BIGINT, updated BIGINT, deleted BIGINT, unchanged BIGINT,
    rejected BIGINT, read BIGINT, operations BIGINT, checkpoint VARCHAR,
    previous_checkpoint VARCHAR, error VARCHAR, error_code VARCHAR,
    started_at TIMESTAMPTZ, finished_at TIMESTAMPTZ);
CREATE TABLE IF NOT EXISTS rejected_rows (run_id BIGINT NOT NULL, source VARCHAR NOT NULL, reason VARCHAR NOT NULL, "row" VARCHAR);
CREATE TABLE IF NOT EXISTS usage (day DATE NOT NULL, source VARCHAR NOT NULL, operations BIGINT NOT NULL);
"""

# Version 1 created these on first use of events; version 2 makes them part of every file.
# ``events`` is append-only and kept in arrival order, so its ``time`` and ``batch_id`` zone
# maps prune range scans; event and user properties stay JSON (their keys differ per event
# type), the standard top-level fields of the HTTP V2 format get typed columns.
_V2 = """
CREATE SEQUENCE IF NOT EXISTS project_ids START 1;
CREATE SEQUENCE IF NOT EXISTS event_batches START 1;
CREATE TABLE IF NOT EXISTS projects (
    id BIGINT PRIMARY KEY, name VARCHAR NOT NULL UNIQUE, key_hash VARCHAR NOT NULL,
    key_hint VARCHAR NOT NULL, created_at TIMESTAMPTZ NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    project_id BIGINT NOT NULL, event_type VARCHAR NOT NULL, user_id VARCHAR,
    device_id VARCHAR, "time" TIMESTAMP NOT NULL, event_properties JSON,
    user_properties JSON, insert_id VARCHAR, session_id BIGINT, app_version VARCHAR,
    platform VARCHAR, os_name VARCHAR, device_model VARCHAR, country VARCHAR, region VARCHAR,
    city VARCHAR, language VARCHAR, ip VARCHAR, revenue DOUBLE,
    received_at TIMESTAMP NOT NULL, batch_id BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS event_catalog (
    project_id BIGINT NOT NULL, event_type VARCHAR NOT NULL, kind VARCHAR NOT NULL,
    name VARCHAR NOT NULL, first_seen TIMESTAMP NOT NULL);
-- a random id made with the events tables: a file deleted and re-created gets a new one,
-- so a process's dedup index of the old file is never used for the new
INSERT OR IGNORE INTO settings
    SELECT 'events_store_id', substr(replace(CAST(uuid() AS VARCHAR), '-', ''), 1, 16);
"""

# Version 3: a run records the syncing process's peak resident memory (NULL for older runs).
_V3 = """
ALTER TABLE runs ADD COLUMN IF NOT EXISTS peak_memory_bytes BIGINT;
"""


# Version 4: every documented field of an HTTP V2 event has a column (typed; objects as
# JSON), and the user and group properties that operations ($set, $add, ...) leave are
# logged per batch: the newest row of a user (or group) is its current properties, which
# each later event is stored with (see profilesync.events.userprops). ``scope`` is ``user``
# or ``device`` for users (the id is a user_id or a device_id) and the group type for
# groups; a row with NULL properties clears them.
_V4_COLUMNS = {
    "os_version": "VARCHAR",
    "device_brand": "VARCHAR",
    "device_manufacturer": "VARCHAR",
    "carrier": "VARCHAR",
    "dma": "VARCHAR",
    "version_name": "VARCHAR",
    "library": "VARCHAR",
    "user_agent": "VARCHAR",
    "partner_id": "VARCHAR",
    "idfa": "VARCHAR",
    "idfv": "VARCHAR",
    "adid": "VARCHAR",
    "android_id": "VARCHAR",
    "android_app_set_id": "VARCHAR",
    "price": "DOUBLE",
    "quantity": "BIGINT",
    "productId": "VARCHAR",
    "revenueType": "VARCHAR",
    "currency": "VARCHAR",
    "location_lat": "DOUBLE",
    "location_lng": "DOUBLE",
    "event_id": "BIGINT",
    "groups": "JSON",
    "group_properties": "JSON",
    "plan": "JSON",
    "ingestion_metadata": "JSON",
    "skip_user_properties_sync": "BOOLEAN",
}
_V4 = (
    "".join(
        f'ALTER TABLE events ADD COLUMN IF NOT EXISTS "{name}" {sql_type};\n'
        for name, sql_type in _V4_COLUMNS.items()
    )
    + """
CREATE TABLE IF NOT EXISTS event_property_states (
    kind VARCHAR NOT NULL, project_id BIGINT NOT NULL, scope VARCHAR NOT NULL,
    id VARCHAR NOT NULL, properties JSON, batch_id BIGINT NOT NULL);
"""
)


# Version 5: what running a server for months needs. Named users with a role (admin,
# editor, viewer) and their API tokens (hashed), an audit log of who changed what, alert
# channels (webhook, email), every delivery attempt with the receiver's answer, and the
# alert state per subject (a source failing or stopped, a month's quota threshold) so that
# an alert is sent once per change and a recovery is noticed.
_V5 = """
CREATE TABLE IF NOT EXISTS users (
    name VARCHAR PRIMARY KEY, role VARCHAR NOT NULL, password_hash VARCHAR,
    invite_hash VARCHAR, invite_expires_at TIMESTAMPTZ, invited_by VARCHAR,
    created_at TIMESTAMPTZ NOT NULL, disabled_at TIMESTAMPTZ);
CREATE TABLE IF NOT EXISTS api_tokens (
    id BIGINT PRIMARY KEY, user_name VARCHAR NOT NULL, label VARCHAR NOT NULL,
    token_hash VARCHAR NOT NULL UNIQUE, hint VARCHAR NOT NULL, created_at TIMESTAMPTZ NOT NULL,
    last_used_at TIMESTAMPTZ, revoked_at TIMESTAMPTZ);
CREATE TABLE IF NOT EXISTS audit_log (
    id BIGINT PRIMARY KEY, "at" TIMESTAMPTZ NOT NULL, actor VARCHAR NOT NULL,
    via VARCHAR NOT NULL, action VARCHAR NOT NULL, target_kind VARCHAR NOT NULL,
    target VARCHAR, detail JSON);
CREATE TABLE IF NOT EXISTS alert_channels (
    name VARCHAR PRIMARY KEY, kind VARCHAR NOT NULL, config JSON NOT NULL,
    events JSON NOT NULL, created_at TIMESTAMPTZ NOT NULL);
CREATE TABLE IF NOT EXISTS alert_deliveries (
    id BIGINT PRIMARY KEY, channel VARCHAR NOT NULL, event VARCHAR NOT NULL,
    subject VARCHAR, title VARCHAR NOT NULL, status VARCHAR NOT NULL, answer VARCHAR,
    attempted_at TIMESTAMPTZ NOT NULL);
CREATE TABLE IF NOT EXISTS alert_state (
    subject VARCHAR PRIMARY KEY, state VARCHAR NOT NULL, changed_at TIMESTAMPTZ NOT NULL);
"""

_V6 = """
CREATE TABLE IF NOT EXISTS cohorts (
    name VARCHAR PRIMARY KEY, definition JSON NOT NULL, created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL);
"""


def _run(sql: str) -> Callable[[duckdb.DuckDBPyConnection], None]:
    def migrate(con: duckdb.DuckDBPyConnection) -> None:
        con.execute(sql)

    return migrate


#: (version, what it adds, the migration); in order, each from the version before it
MIGRATIONS: list[tuple[int, str, Callable[[duckdb.DuckDBPyConnection], None]]] = [
    (1, "settings, connections, sources, runs, rejected rows, usage", _run(_V1)),
    (2, "events, projects and the event catalog in every file", _run(_V2)),
    (3, "runs record the process's peak memory", _run(_V3)),
    (4, "every HTTP V2 event field; user and group property states", _run(_V4)),
    (5, "users, API tokens, audit log, alert channels, deliveries and state", _run(_V5)),
    (6, "saved cohorts", _run(_V6)),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


class StoreTooNewError(ConfigurationError):
    """The store file was written by a newer profilesync than this one."""

    code = "store_too_new"


def version(con: duckdb.DuckDBPyConnection) -> int:
    """The file's schema version; 0 for a new, empty file."""
    has_settings = con.execute(
        "SELECT 1 FROM duckdb_tables() WHERE schema_name = 'main' AND table_name = 'settings'"
    ).fetchone()
    if not has_settings:
        return 0
    row = con.execute("SELECT value FROM settings WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row and row[0] else 0


def migrate(con: duckdb.DuckDBPyConnection) -> int:
    """Bring the file to :data:`SCHEMA_VERSION` in one transaction; the version it was at."""
    found = version(con)
    if found > SCHEMA_VERSION:
        raise StoreTooNewError(
            f"the store file has schema version {found}, newer than the {SCHEMA_VERSION} this "
            "profilesync knows: a newer profilesync wrote it. Upgrade profilesync "
            "(`pip install -U profilesync`) to open it."
        )
    if found == SCHEMA_VERSION:
        return found
    con.execute("BEGIN TRANSACTION")
    try:
        for number, _, step in MIGRATIONS:
            if number > found:
                step(con)
        con.execute("DELETE FROM settings WHERE key = 'schema_version'")
        con.execute("INSERT INTO settings VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return found
