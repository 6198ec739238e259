"""Conformance driver for PostgreSQL: a database of its own on the session's real server.

Tables are ``public.<name>``. "Change tracking" in Postgres terms is the replica identity:
a table created with change tracking has ``REPLICA IDENTITY FULL`` (deletes carry the old
user id whatever the key); without it the table has no primary key and the default
identity, which test mapping refuses. ``replace_table`` drops and re-creates the table (a
new relation OID); ``expire_history`` makes the server invalidate the database's slots
the way it does when they fall behind ``max_slot_wal_keep_size``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from profilesync.pgserver import PgServer
from tests.conformance.driver import Row, Schema
from tests.postgres_server import admin, drop_database, fresh_database, invalidate_slots

PG_TYPES = {
    "string": "text",
    "int": "bigint",
    "float": "double precision",
    "bool": "boolean",
    "timestamp": "timestamptz",
}


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class PostgresDriver:
    kind = "postgres"
    strategy = "cdc"
    supports_query = True
    detects_replace = True
    can_expire = True

    def __init__(self, server: PgServer) -> None:
        self.server = server
        self.database = fresh_database(server, "conformance")
        self.conn = admin(server, self.database)
        self.conn.execute("SET TimeZone = 'UTC'")

    def connection_config(self) -> dict[str, Any]:
        return {"dsn": self.server.dsn(self.database)}

    def table_name(self, name: str) -> str:
        return f"public.{name}"

    def _table(self, name: str) -> str:
        return f"public.{_ident(name)}"

    def create_table(
        self, name: str, schema: Schema, rows: list[Row], *, change_tracking: bool = True
    ) -> None:
        columns = ", ".join(f"{_ident(c)} {PG_TYPES[t]}" for c, t in schema.items())
        self.conn.execute(f"CREATE TABLE {self._table(name)} ({columns})")
        if change_tracking:
            self.enable_change_tracking(name)
        self.insert(name, rows)

    def enable_change_tracking(self, name: str) -> None:
        self.conn.execute(f"ALTER TABLE {self._table(name)} REPLICA IDENTITY FULL")

    def insert(self, name: str, rows: list[Row]) -> None:
        if not rows:
            return
        columns = list(rows[0])
        sql = (
            f"INSERT INTO {self._table(name)} ({', '.join(map(_ident, columns))}) "
            f"VALUES ({', '.join(['%s'] * len(columns))})"
        )
        with self.conn.transaction():
            self.conn.cursor().executemany(sql, [[row[c] for c in columns] for row in rows])

    def update(self, name: str, key: str, key_value: Any, values: Row) -> None:
        sets = ", ".join(f"{_ident(c)} = %s" for c in values)
        self.conn.execute(
            f"UPDATE {self._table(name)} SET {sets} WHERE {_ident(key)} = %s",
            [*values.values(), key_value],
        )

    def delete(self, name: str, key: str, key_value: Any) -> None:
        self.conn.execute(f"DELETE FROM {self._table(name)} WHERE {_ident(key)} = %s", [key_value])

    def replace_table(self, name: str, schema: Schema, rows: list[Row]) -> None:
        self.conn.execute(f"DROP TABLE {self._table(name)}")
        self.create_table(name, schema, rows)

    def expire_history(self, name: str) -> None:
        invalidate_slots(self.server, self.database)

    def rows(self, name: str) -> list[Row]:
        cur = self.conn.execute(f"SELECT * FROM {self._table(name)}")
        names = [d.name for d in cur.description or []]
        return [{n: _utc(v) for n, v in zip(names, row, strict=True)} for row in cur.fetchall()]

    def close(self) -> None:
        self.conn.close()
        drop_database(self.server, self.database)


def _utc(value: Any) -> Any:
    return value.astimezone(UTC) if isinstance(value, datetime) else value


def make_driver(request: pytest.FixtureRequest, tmp_path: Path) -> PostgresDriver:
    """A fresh database on the session's server (``tmp_path`` is not needed)."""
    server: PgServer = request.getfixturevalue("postgres_server")
    return PostgresDriver(server)
