"""The embedded store: one DuckDB file for profiles and everything about syncing them.

Each source's current rows live in their own typed table ``profiles_<source id>`` keyed
by ``user_id`` without an index: a sync deletes the changed users through a hash join
and appends their new rows, which keeps a sync's cost close to the size of its changes
(an ART index makes large deletes slow in DuckDB; updates in place rewrite whole row
groups at checkpoint). Everything a sync changes commits in one transaction.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from sqlglot import exp

from profilesync.errors import (
    ConfigurationError,
    NeedsResyncError,
    NotFoundError,
)
from profilesync.mapping import quote
from profilesync.model import Checkpoint, Connection, Mapping, Source, SyncResult
from profilesync.sandbox import lock_down, locked
from profilesync.secrets import seal, unseal
from profilesync.store.base import Quota
from profilesync.store.home import STORE_FILE, connect, prepare_home, store_error
from profilesync.sync.quota import DEFAULT_PLAN
from profilesync.sync.quota import Quota as PlanQuota
from profilesync.sync.transform import DELETED, Transformed

SCHEMA_VERSION = "1"
__all__ = ["STORE_FILE", "DuckDBStore", "json_value", "now"]

_SCHEMA = """
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

_RUN_COLUMNS = (
    "id",
    "source_id",
    "source",
    "mode",
    "status",
    "inserted",
    "updated",
    "deleted",
    "unchanged",
    "rejected",
    "read",
    "operations",
    "checkpoint",
    "previous_checkpoint",
    "error",
    "error_code",
    "started_at",
    "finished_at",
)


def now() -> datetime:
    return datetime.now(UTC)


class DuckDBStore:
    """The embedded profile store in ``<home>/profilesync.duckdb``."""

    def __init__(self, home: Path | str, *, wait_seconds: float = 10.0) -> None:
        self.home = Path(home)
        prepare_home(self.home)
        self.path = self.home / STORE_FILE
        self.con = connect(self.path, wait_seconds)
        if not locked(self.con):  # a second store on this file shares the first's database
            self.con.execute("SET GLOBAL TimeZone = 'UTC'")  # for cursors and connections too
            lock_down(self.con)  # event queries run here: only the store's file is in reach
        self.con.execute(_SCHEMA)
        self.con.execute(
            "INSERT OR IGNORE INTO settings VALUES ('schema_version', ?)", [SCHEMA_VERSION]
        )

    #: the sqlglot dialect compiled queries are rendered in
    dialect = "duckdb"

    def read(self, query: exp.Expression, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one compiled read-only query (a sqlglot expression over this store's
        relations), rendered in :attr:`dialect`; the rows as tuples."""
        return self.con.execute(query.sql(dialect=self.dialect), list(params)).fetchall()

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> DuckDBStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """All or nothing; a commit the disk refuses is reported as the full disk it is."""
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield self.con
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        try:
            self.con.execute("COMMIT")
        except duckdb.Error as exc:
            self._rollback_quietly()
            raise store_error(exc, self.home) or exc from exc

    def _rollback_quietly(self) -> None:
        """After a failed COMMIT DuckDB may or may not still hold the transaction open."""
        with suppress(duckdb.Error):
            self.con.execute("ROLLBACK")

    # -- settings ----------------------------------------------------------------------
    def get_setting(self, key: str, default: str | None = None) -> str | None:
        row = self.con.execute("SELECT value FROM settings WHERE key = ?", [key]).fetchone()
        return row[0] if row else default

    def set_setting(self, key: str, value: str | None) -> None:
        self.con.execute("DELETE FROM settings WHERE key = ?", [key])
        if value is not None:
            self.con.execute("INSERT INTO settings VALUES (?, ?)", [key, value])

    def quota(self) -> PlanQuota:
        limit = self.get_setting("operations_limit")
        return PlanQuota.for_plan(
            self.get_setting("plan", DEFAULT_PLAN) or DEFAULT_PLAN, int(limit) if limit else None
        )

    # -- connections -------------------------------------------------------------------
    def add_connection(self, connection: Connection) -> None:
        if self._exists("connections", "name", connection.name):
            raise ConfigurationError(
                f"connection {connection.name!r} exists already: pick another name"
            )
        self.con.execute(
            "INSERT INTO connections VALUES (?, ?, ?, ?)",
            [connection.name, connection.kind, json.dumps(self._seal(connection)), now()],
        )

    def has_connection(self, name: str) -> bool:
        return self._exists("connections", "name", name)

    def get_connection(self, name: str) -> Connection:
        row = self.con.execute(
            "SELECT name, kind, config FROM connections WHERE name = ?", [name]
        ).fetchone()
        if row is None:
            raise NotFoundError(f"no connection named {name!r}: see `profilesync connection list`")
        return Connection(row[0], row[1], unseal(self.home, row[0], json.loads(row[2])))

    def list_connections(self) -> list[Connection]:
        rows = self.con.execute(
            "SELECT name, kind, config FROM connections ORDER BY name"
        ).fetchall()
        return [Connection(r[0], r[1], unseal(self.home, r[0], json.loads(r[2]))) for r in rows]

    def update_connection(self, connection: Connection) -> None:
        self.get_connection(connection.name)
        self.con.execute(
            "UPDATE connections SET config = ? WHERE name = ?",
            [json.dumps(self._seal(connection)), connection.name],
        )

    def _seal(self, connection: Connection) -> dict[str, Any]:
        """Secret fields encrypted with a key kept outside this file (see profilesync.secrets)."""
        return seal(self.home, connection.kind, connection.config)

    def delete_connection(self, name: str) -> None:
        self.get_connection(name)
        users = [s.name for s in self.list_sources() if s.connection == name]
        if users:
            raise ConfigurationError(
                f"connection {name!r} is used by source(s) {', '.join(users)}: delete them first"
            )
        self.con.execute("DELETE FROM connections WHERE name = ?", [name])

    # -- sources -----------------------------------------------------------------------
    def add_source(self, source: Source) -> Source:
        if self._exists("sources", "name", source.name):
            raise ConfigurationError(f"source {source.name!r} exists already: pick another name")
        self.get_connection(source.connection)
        self.check_property_names(source.name, source.mapping)
        # ids from the tables, not a sequence: a DuckDB sequence can go back after a failed
        # checkpoint (a full disk), while rows never do; runs keep ids of deleted sources
        self.con.execute(
            "INSERT INTO sources SELECT greatest((SELECT coalesce(max(id), 0) FROM sources), "
            "(SELECT coalesce(max(source_id), 0) FROM runs)) + 1, ?, ?, ?, ?, ?, ?, ?, NULL, ?",
            [
                source.name,
                source.connection,
                json.dumps(source.mapping.to_json()),
                source.strategy,
                source.frequency_seconds,
                source.data_type,
                source.paused,
                now(),
            ],
        )
        return self.get_source(source.name)

    def check_property_names(self, source_name: str, mapping: Mapping) -> None:
        """Property names are unique across sources (a profile has one value per name)."""
        taken = {
            n: s.name
            for s in self.list_sources()
            if s.name != source_name
            for n in s.mapping.property_names
        }
        clashes = [
            f"{n!r} (from source {taken[n]!r})" for n in mapping.property_names if n in taken
        ]
        if clashes:
            raise ConfigurationError(
                f"property names must be unique across sources; taken already: {', '.join(clashes)}. "
                "Give them another display name (--property column=Other Name)."
            )

    def get_source(self, name: str) -> Source:
        rows = self._sources("WHERE name = ?", [name])
        if not rows:
            raise NotFoundError(f"no source named {name!r}: see `profilesync source list`")
        return rows[0]

    def list_sources(self) -> list[Source]:
        return self._sources("ORDER BY name", [])

    def _sources(self, clause: str, params: list[Any]) -> list[Source]:
        rows = self.con.execute(
            "SELECT id, name, connection, mapping, strategy, frequency_seconds, data_type, paused, checkpoint, created_at "
            f"FROM sources {clause}",
            params,
        ).fetchall()
        return [
            Source(
                name=r[1],
                connection=r[2],
                mapping=Mapping.from_json(json.loads(r[3])),
                strategy=r[4],
                frequency_seconds=r[5],
                data_type=r[6],
                paused=r[7],
                id=r[0],
                checkpoint=Checkpoint.from_json(json.loads(r[8]) if r[8] else None),
                created_at=r[9],
            )
            for r in rows
        ]

    def update_source(self, name: str, **changes: Any) -> Source:
        """Change a source's frequency, paused flag, strategy or mapping."""
        self.get_source(name)
        allowed = {"frequency_seconds", "paused", "strategy", "mapping"}
        for key, value in changes.items():
            if key not in allowed:
                raise ConfigurationError(f"cannot change {key!r} of a source")
            if key == "mapping":
                self.check_property_names(name, value)
                value = json.dumps(value.to_json())
            self.con.execute(f"UPDATE sources SET {key} = ? WHERE name = ?", [value, name])
        return self.get_source(name)

    def delete_source(self, name: str) -> None:
        """Remove the source and every property it gave (its profile table); history stays."""
        source = self.get_source(name)
        with self.transaction() as con:
            con.execute(f"DROP TABLE IF EXISTS {source.profile_table}")
            con.execute("DELETE FROM sources WHERE id = ?", [source.id])

    # -- applying a sync -------------------------------------------------------------
    def apply(
        self,
        source: Source,
        changes: Transformed,
        checkpoint: Checkpoint,
        result: SyncResult,
        *,
        full: bool,
        quota: Quota,
    ) -> SyncResult:
        """Apply ``changes``; with ``full``, users absent from them are deleted (a snapshot diff).

        Only rows that differ from the store are written and metered. The store, the
        checkpoint, the run and the usage commit together; any error rolls all back.
        """
        table = source.profile_table
        self.con.register("net_arrow", changes.net)
        self.con.register("rejected_arrow", changes.rejected)
        try:
            with self.transaction() as con:
                self._ensure_profile_table(con, table, full)
                self._plan(con, table, changes.net.schema, full)
                counts = con.execute(
                    f"SELECT count_if(NOT {DELETED} AND NOT _exists), count_if(NOT {DELETED} AND _exists AND NOT _same), "
                    f"count_if({DELETED} AND _exists), count_if(NOT {DELETED} AND _same) FROM _plan"
                ).fetchone()
                assert counts is not None
                # count_if over an empty plan is NULL, not 0
                result.inserted, result.updated, result.deleted, result.unchanged = (
                    int(c or 0) for c in counts
                )
                quota.check(self._used_this_month(con), result.operations)
                _fault("apply")
                props = ", ".join(
                    quote(f.name) for f in changes.net.schema if f.name not in ("user_id", DELETED)
                )
                # by the row ids the plan's join found: no second scan of the user_id column
                con.execute(
                    f"DELETE FROM {table} WHERE rowid IN (SELECT _rowid FROM _plan "
                    f"WHERE _exists AND ({DELETED} OR NOT _same))"
                )
                _fault("mid_apply")
                con.execute(
                    f"INSERT INTO {table} (user_id{', ' + props if props else ''}, _synced_at) "
                    f"SELECT user_id{', ' + props if props else ''}, ? FROM _plan WHERE NOT {DELETED} AND NOT _same",
                    [now()],
                )
                con.execute(
                    "UPDATE sources SET checkpoint = ? WHERE id = ?",
                    [json.dumps(checkpoint.to_json()), source.id],
                )
                result.status, result.checkpoint, result.finished_at = (
                    "success",
                    checkpoint.position,
                    now(),
                )
                result.rejected = changes.rejected_count
                self._insert_run(con, source.id, result)
                con.execute(
                    'INSERT INTO rejected_rows SELECT ?, ?, reason, "row" FROM rejected_arrow',
                    [result.run_id, source.name],
                )
                con.execute(
                    "INSERT INTO usage VALUES (?, ?, ?)",
                    [result.finished_at.date(), source.name, result.operations],
                )
                _fault("before_commit")
        finally:  # outside the transaction: after a rollback it would fail and hide the cause
            self.con.execute("DROP TABLE IF EXISTS _plan")
            self.con.unregister("net_arrow")
            self.con.unregister("rejected_arrow")
        return result

    def _ensure_profile_table(self, con: duckdb.DuckDBPyConnection, table: str, full: bool) -> None:
        """Create the source's table and follow the mapping's columns and types.

        A type change converts the stored values when every one of them converts; else a
        full snapshot re-fills the column, and a change stream asks for a resync.
        """
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {table} (user_id VARCHAR NOT NULL, _synced_at TIMESTAMPTZ)"
        )
        existing = {str(r[0]): str(r[1]) for r in con.execute(f"DESCRIBE {table}").fetchall()}
        wanted = {
            str(r[0]): str(r[1]) for r in con.execute("DESCRIBE SELECT * FROM net_arrow").fetchall()
        }
        for name in set(existing) - set(wanted) - {"user_id", "_synced_at"}:
            con.execute(f"ALTER TABLE {table} DROP COLUMN {quote(name)}")  # no longer mapped
        for name, dtype in wanted.items():
            if name in ("user_id", DELETED) or existing.get(name) == dtype:
                continue
            if name in existing and self._converts(con, table, name, dtype):
                con.execute(f"ALTER TABLE {table} ALTER {quote(name)} TYPE {dtype}")
                continue
            if name in existing and not full:
                raise NeedsResyncError(
                    f"property {name!r} changed type from {existing[name]} to {dtype} in the "
                    "warehouse and the values already stored cannot be converted. Nothing was "
                    "applied. Run the sync with --resync to re-read the table as it is now."
                )
            if name in existing:
                con.execute(f"ALTER TABLE {table} DROP COLUMN {quote(name)}")
            con.execute(f"ALTER TABLE {table} ADD COLUMN {quote(name)} {dtype}")

    @staticmethod
    def _converts(con: duckdb.DuckDBPyConnection, table: str, name: str, dtype: str) -> bool:
        row = con.execute(
            f"SELECT count(*) FROM {table} WHERE {quote(name)} IS NOT NULL "
            f"AND TRY_CAST({quote(name)} AS {dtype}) IS NULL"
        ).fetchone()
        return row is not None and row[0] == 0

    def _plan(
        self, con: duckdb.DuckDBPyConnection, table: str, schema: pa.Schema, full: bool
    ) -> None:
        """Classify each net change against the store: new user, real update, no-op, delete."""
        props = [quote(f.name) for f in schema if f.name not in ("user_id", DELETED)]
        net = "net_arrow"
        if full:  # users the snapshot no longer has are deletes
            net = f"""(SELECT * FROM net_arrow UNION ALL BY NAME
                       SELECT s.user_id, true AS {DELETED} FROM {table} s
                       ANTI JOIN net_arrow a ON s.user_id = a.user_id)"""
        same = " AND ".join(f"n.{p} IS NOT DISTINCT FROM p.{p}" for p in props) or "true"
        con.execute(f"""CREATE TEMP TABLE _plan AS SELECT n.*, p.rowid AS _rowid,
                        p.user_id IS NOT NULL AS _exists,
                        (p.user_id IS NOT NULL AND {same}) AS _same
                        FROM {net} n LEFT JOIN {table} p ON n.user_id = p.user_id""")

    def _used_this_month(self, con: duckdb.DuckDBPyConnection) -> int:
        start = now().date().replace(day=1)
        row = con.execute(
            "SELECT coalesce(sum(operations), 0) FROM usage WHERE day >= ?", [start]
        ).fetchone()
        return int(row[0]) if row else 0

    def _insert_run(
        self, con: duckdb.DuckDBPyConnection, source_id: int | None, result: SyncResult
    ) -> None:
        """One history line; its id is one past the largest, in the same statement.

        Not a DuckDB sequence: measured after a commit that failed on a full disk, a
        sequence came back below ids already stored and the next run hit a duplicate key.
        """
        values = [
            source_id,
            result.source,
            result.mode,
            result.status,
            result.inserted,
            result.updated,
            result.deleted,
            result.unchanged,
            result.rejected,
            result.read,
            result.operations,
            result.checkpoint,
            result.previous_checkpoint,
            result.error,
            result.error_code,
            result.started_at,
            result.finished_at,
        ]
        row = con.execute(
            f"INSERT INTO runs ({', '.join(_RUN_COLUMNS)}) SELECT coalesce(max(id), 0) + 1, "
            f"{', '.join('?' * len(values))} FROM runs RETURNING id",
            values,
        ).fetchone()
        assert row is not None
        result.run_id = int(row[0])

    def record_failed_run(self, source: Source | None, result: SyncResult) -> SyncResult:
        """A failed run changes nothing but its own history line."""
        result.status = "failed"
        result.inserted = result.updated = result.deleted = result.unchanged = 0
        result.finished_at = result.finished_at or now()
        try:
            self._insert_run(self.con, source.id if source else None, result)
        except duckdb.Error as exc:  # e.g. the disk that failed the sync is still full
            raise store_error(exc, self.home) or exc from exc
        return result

    # -- reading ---------------------------------------------------------------------
    def runs(self, source: str, limit: int = 20) -> list[dict[str, Any]]:
        rows = self.con.execute(
            f"SELECT {', '.join(_RUN_COLUMNS)} FROM runs WHERE source = ? ORDER BY id DESC LIMIT ?",
            [source, limit],
        ).fetchall()
        return [_jsonable(dict(zip(_RUN_COLUMNS, r, strict=True))) for r in rows]

    def rejected_rows(self, run_id: int, limit: int = 100) -> list[dict[str, Any]]:
        rows = self.con.execute(
            'SELECT reason, "row" FROM rejected_rows WHERE run_id = ? LIMIT ?', [run_id, limit]
        ).fetchall()
        return [{"reason": r[0], "row": json.loads(r[1]) if r[1] else None} for r in rows]

    def profile_tables(self) -> list[tuple[Source, list[str]]]:
        """Sources that have synced, with the property columns their table holds."""
        present = {
            r[0]
            for r in self.con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'"
            ).fetchall()
        }
        out = []
        for source in self.list_sources():
            if source.profile_table in present:
                cols = [
                    r[0] for r in self.con.execute(f"DESCRIBE {source.profile_table}").fetchall()
                ]
                out.append((source, [c for c in cols if c not in ("user_id", "_synced_at")]))
        return out

    def get_profile(self, user_id: str, *, detail: bool = False) -> dict[str, Any]:
        """``{"user_id", "properties"}``; with ``detail`` also each property's source and sync time."""
        properties: dict[str, Any] = {}
        details: dict[str, dict[str, Any]] = {}
        found = False
        for source, cols in self.profile_tables():
            cur = self.con.execute(
                f"SELECT * FROM {source.profile_table} WHERE user_id = ?", [user_id]
            )
            names = [d[0] for d in cur.description]
            row = cur.fetchone()
            if row is None:
                continue
            found = True
            values = dict(zip(names, row, strict=True))
            for col in cols:
                if (value := json_value(values[col])) is not None:  # NaN is no value either
                    properties[col] = value
                    details[col] = {
                        "source": source.name,
                        "synced_at": json_value(values["_synced_at"]),
                    }
        if not found:
            raise NotFoundError(
                f"no profile for user_id {user_id!r}: no source has a current row for it"
            )
        profile: dict[str, Any] = {"user_id": user_id, "properties": properties}
        if detail:
            profile["details"] = details
        return profile

    def export_profiles(self, batch_size: int = 10_000) -> Iterator[dict[str, Any]]:
        """Every profile, ordered by ``user_id``, in the ``profile get`` shape."""
        tables = self.profile_tables()
        if not tables:
            return
        ids = " UNION ".join(f"SELECT user_id FROM {s.profile_table}" for s, _ in tables)
        cols = ", ".join(f"t{i}.{quote(c)}" for i, (_, cs) in enumerate(tables) for c in cs)
        joins = " ".join(
            f"LEFT JOIN {s.profile_table} t{i} ON t{i}.user_id = u.user_id"
            for i, (s, _) in enumerate(tables)
        )
        cur = self.con.cursor()
        reader = cur.execute(
            f"SELECT u.user_id{', ' + cols if cols else ''} FROM ({ids}) u {joins} ORDER BY u.user_id"
        ).to_arrow_reader(batch_size)
        for batch in reader:
            for row in batch.to_pylist():
                uid = row.pop("user_id")
                yield {
                    "user_id": uid,
                    "properties": {
                        k: value for k, v in row.items() if (value := json_value(v)) is not None
                    },
                }

    def usage(self) -> dict[str, Any]:
        quota = self.quota()
        start = now().date().replace(day=1)
        by_source = self.con.execute(
            "SELECT source, sum(operations) FROM usage WHERE day >= ? GROUP BY source ORDER BY source",
            [start],
        ).fetchall()
        by_day = self.con.execute(
            "SELECT day, sum(operations) FROM usage WHERE day >= ? GROUP BY day ORDER BY day",
            [start],
        ).fetchall()
        used = sum(int(r[1]) for r in by_source)
        return {
            "month": start.strftime("%Y-%m"),
            "plan": quota.plan,
            "limit": quota.limit,
            "used": used,
            "remaining": max(quota.limit - used, 0),
            "sources": [{"source": r[0], "operations": int(r[1])} for r in by_source],
            "days": [{"day": r[0].isoformat(), "operations": int(r[1])} for r in by_day],
        }

    def _exists(self, table: str, column: str, value: str) -> bool:
        return (
            self.con.execute(f"SELECT 1 FROM {table} WHERE {column} = ?", [value]).fetchone()
            is not None
        )


def json_value(value: Any) -> Any:
    """Typed values for JSON: timestamps as ISO 8601 UTC, whole decimals as integers, other
    decimals as doubles; NaN and infinities are no value (None), as NULL is; lists and structs
    convert element by element."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        if not value.is_finite():
            return None
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: json_value(v) for k, v in value.items()}
    return value


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: json_value(v) for k, v in row.items()}


def _fault(point: str) -> None:
    """Fault injection for the crash-safety tests: PROFILESYNC_FAULT=<point> kills the process."""
    if os.environ.get("PROFILESYNC_FAULT") == point:
        os.kill(os.getpid(), 9)
