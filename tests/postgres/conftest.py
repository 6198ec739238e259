"""Fixtures for the Postgres source tests: a database of their own on the session's server,
and a store file with a ``pg`` connection to it. Every test here needs the real server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from profilesync.mapping import from_columns, from_query
from profilesync.model import Connection, Source
from profilesync.pgserver import PgServer
from profilesync.store.duckdb import DuckDBStore
from profilesync.warehouses.postgres.slot import slot_name
from tests.postgres_server import admin, drop_database, fresh_database

PROPS = [("title", "Title"), ("score", "Score"), ("vip", "VIP"), ("seen_at", "Seen At")]


class Pg:
    """One database: an autocommit superuser session and its DSN."""

    def __init__(self, server: PgServer, database: str) -> None:
        self.server = server
        self.database = database
        self.dsn = server.dsn(database)
        self.conn = admin(server, database)
        self.conn.execute("SET TimeZone = 'UTC'")

    def run(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        cur = self.conn.execute(sql, params)
        return cur.fetchall() if cur.description else []

    def session(self) -> psycopg.Connection[Any]:
        """A second session (for concurrent writers)."""
        return admin(self.server, self.database)

    def slot(self, source: str) -> dict[str, Any] | None:
        cur = self.conn.execute(
            "SELECT slot_name, wal_status, confirmed_flush_lsn::text AS confirmed "
            "FROM pg_replication_slots WHERE slot_name = %s",
            [slot_name(source)],
        )
        row = cur.fetchone()
        return dict(zip([d.name for d in cur.description or []], row, strict=True)) if row else None

    def slots(self) -> list[str]:
        return [
            r[0]
            for r in self.run(
                "SELECT slot_name FROM pg_replication_slots WHERE database = current_database()"
            )
        ]

    def create_users(self, table: str = "public.users", rows: int = 3) -> None:
        """``uid bigint`` primary key, a title, a score, a flag and a timestamp."""
        self.run(
            f"CREATE TABLE {table} (uid bigint PRIMARY KEY, title text, score float8, "
            "vip boolean, seen_at timestamptz)"
        )
        self.run(
            f"INSERT INTO {table} SELECT 100000 + i, 'title-' || i, i / 4.0, i %% 2 = 0, "
            "'2024-03-01 12:00:00+00'::timestamptz + i * interval '1 hour' "
            "FROM generate_series(1, %s) i",
            [rows],
        )


@pytest.fixture
def pg(postgres_server: PgServer) -> Iterator[Pg]:
    database = fresh_database(postgres_server, "pgsrc")
    db = Pg(postgres_server, database)
    try:
        yield db
    finally:
        db.conn.close()
        drop_database(postgres_server, database)


@pytest.fixture
def pgstore(tmp_path: Path, pg: Pg) -> Iterator[DuckDBStore]:
    with DuckDBStore(tmp_path / "home") as store:
        store.add_connection(Connection("pg", "postgres", {"dsn": pg.dsn}))
        yield store


def add_table_source(
    store: DuckDBStore,
    name: str = "users",
    table: str = "public.users",
    user_id: str = "uid",
    props: list[tuple[str, str]] | None = None,
    strategy: str = "cdc",
) -> Source:
    mapping = from_columns(table, user_id, PROPS if props is None else props)
    return store.add_source(Source(name, "pg", mapping, strategy=strategy))  # type: ignore[arg-type]


def add_query_source(
    store: DuckDBStore, name: str, query: str, *, pushdown: bool = False
) -> Source:
    mapping = from_query(query, "postgres", pushdown=pushdown)
    strategy = "diff" if pushdown else "cdc"
    return store.add_source(Source(name, "pg", mapping, strategy=strategy))  # type: ignore[arg-type]


def profiles(store: DuckDBStore) -> dict[str, dict[str, Any]]:
    return {p["user_id"]: p["properties"] for p in store.export_profiles()}
