"""A real PostgreSQL server for the whole test session (pytest plugin).

``postgres_server`` runs Debian's PostgreSQL 15 (``initdb`` + ``pg_ctl``) in a temporary
directory with ``wal_level = logical``, on a free port of 127.0.0.1, and stops it when the
session ends. Tests that use it get their own database from ``fresh_database``. Missing
binaries fail the tests that need them with the command that installs them; nothing is
skipped.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from profilesync import pgserver
from profilesync.pgserver import PgServer


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PgServer]:
    """One server per session; ``server.dsn(dbname)`` connects as its superuser."""
    missing = pgserver.missing_binaries()
    if missing:
        pytest.fail(f"{pgserver.INSTALL_HINT}; missing: {', '.join(missing)}", pytrace=False)
    server = pgserver.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.data_dir.parent, ignore_errors=True)


def admin(server: PgServer, dbname: str = "postgres") -> psycopg.Connection[Any]:
    """An autocommit superuser session."""
    return psycopg.connect(server.dsn(dbname), autocommit=True)


def fresh_database(server: PgServer, prefix: str = "t") -> str:
    """Create an empty database and return its name."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with admin(server) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_database(server: PgServer, name: str) -> None:
    """Drop a database with its replication slots (they keep WAL and block DROP DATABASE)."""
    with admin(server) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
            "WHERE database = %s AND active_pid IS NOT NULL",
            [name],
        )
        conn.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = %s",
            [name],
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def invalidate_slots(server: PgServer, dbname: str) -> None:
    """Make the server invalidate the slots of ``dbname`` as it does when they fall behind
    more than ``max_slot_wal_keep_size``: shrink the limit, write and recycle WAL, checkpoint.
    """
    with admin(server, dbname) as conn:
        conn.execute("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'")
        conn.execute("SELECT pg_reload_conf()")
        try:
            for _ in range(10):
                conn.execute(
                    "SELECT pg_logical_emit_message(false, 'filler', repeat('x', 1000000))"
                )
                conn.execute("SELECT pg_switch_wal()")
                conn.execute("CHECKPOINT")
                states = conn.execute(
                    "SELECT wal_status FROM pg_replication_slots WHERE database = %s", [dbname]
                ).fetchall()
                if all(s[0] == "lost" for s in states):
                    return
            raise AssertionError(f"the server did not invalidate the slots: {states}")
        finally:
            conn.execute("ALTER SYSTEM RESET max_slot_wal_keep_size")
            conn.execute("SELECT pg_reload_conf()")
