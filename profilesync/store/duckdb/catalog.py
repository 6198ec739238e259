"""Settings, connections, sources with their checkpoints, runs, rejected rows and usage."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import duckdb
import pyarrow as pa

from profilesync.engine.quota import DEFAULT_PLAN
from profilesync.engine.quota import Quota as PlanQuota
from profilesync.errors import ConfigurationError, NotFoundError, UiFix
from profilesync.model import Checkpoint, Connection, Mapping, Source, SyncResult, json_value, now
from profilesync.secrets import seal, unseal
from profilesync.store.duckdb.access import AccessTables
from profilesync.store.duckdb.alerting import AlertTables
from profilesync.store.duckdb.cohorts import CohortTables
from profilesync.store.duckdb.metrics import MetricsTables
from profilesync.store.home import store_error
from profilesync.store.protocol import REJECTED_SAMPLE

RUN_COLUMNS = (
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
    "peak_memory_bytes",
)


class CatalogTables(AccessTables, AlertTables, CohortTables, MetricsTables):
    """The catalog part of the store protocol."""

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
            raise NotFoundError(
                f"no connection named {name!r}: see `profilesync connection list`",
                ui_fix=UiFix("See the connections", "/#connections"),
            )
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
                "Give them another display name (--property column=Other Name).",
                ui_message="property names must be unique across sources; taken already: "
                + ", ".join(clashes),
                ui_fix="Give each of them another display name in the column mapping",
            )

    def get_source(self, name: str) -> Source:
        rows = self._sources("WHERE name = ?", [name])
        if not rows:
            raise NotFoundError(
                f"no source named {name!r}: see `profilesync source list`",
                ui_fix=UiFix("See the sources", "/"),
            )
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
        values: dict[str, Any] = {}
        for key, value in changes.items():
            if key not in allowed:
                raise ConfigurationError(f"cannot change {key!r} of a source")
            if key == "mapping":
                self.check_property_names(name, value)
                value = json.dumps(value.to_json())
            values[key] = value
        if values:  # one statement: every field changes, or none does
            assignments = ", ".join(f"{key} = ?" for key in values)
            self.con.execute(
                f"UPDATE sources SET {assignments} WHERE name = ?", [*values.values(), name]
            )
        return self.get_source(name)

    def delete_source(self, name: str) -> None:
        """Remove the source and every property it gave (its profile table); history stays."""
        source = self.get_source(name)
        with self.transaction() as con:
            con.execute(f"DROP TABLE IF EXISTS {source.profile_table}")
            con.execute("DELETE FROM sources WHERE id = ?", [source.id])

    # -- runs and usage ----------------------------------------------------------------
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
            result.peak_memory_bytes,
        ]
        row = con.execute(
            f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) SELECT coalesce(max(id), 0) + 1, "
            f"{', '.join('?' * len(values))} FROM runs RETURNING id",
            values,
        ).fetchone()
        assert row is not None
        result.run_id = int(row[0])

    def _record_sync(
        self,
        con: duckdb.DuckDBPyConnection,
        source: Source,
        checkpoint: Checkpoint,
        result: SyncResult,
        rejected: pa.Table,
    ) -> None:
        """A successful sync's catalog side, inside its transaction: the checkpoint, the run
        with its rejected rows (``reason``, ``row``; the first :data:`REJECTED_SAMPLE`
        kept), and the usage. Every backend keeps its catalog here."""
        con.execute(
            "UPDATE sources SET checkpoint = ? WHERE id = ?",
            [json.dumps(checkpoint.to_json()), source.id],
        )
        result.status, result.checkpoint, result.finished_at = "success", checkpoint.position, now()
        self._insert_run(con, source.id, result)
        con.register("_rejected_sample", rejected.slice(0, REJECTED_SAMPLE))
        try:
            con.execute(
                'INSERT INTO rejected_rows SELECT ?, ?, reason, "row" FROM _rejected_sample',
                [result.run_id, source.name],
            )
        finally:
            con.unregister("_rejected_sample")
        con.execute(
            "INSERT INTO usage VALUES (?, ?, ?)",
            [result.finished_at.date(), source.name, result.operations],
        )

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

    def runs(self, source: str, limit: int = 20) -> list[dict[str, Any]]:
        rows = self.con.execute(
            f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE source = ? ORDER BY id DESC LIMIT ?",
            [source, limit],
        ).fetchall()
        return [{k: json_value(v) for k, v in zip(RUN_COLUMNS, r, strict=True)} for r in rows]

    def rejected_rows(self, run_id: int, limit: int = 100) -> list[dict[str, Any]]:
        rows = self.con.execute(
            'SELECT reason, "row" FROM rejected_rows WHERE run_id = ? LIMIT ?', [run_id, limit]
        ).fetchall()
        return [{"reason": r[0], "row": json.loads(r[1]) if r[1] else None} for r in rows]

    def _used_this_month(self, con: duckdb.DuckDBPyConnection) -> int:
        row = con.execute(
            "SELECT coalesce(sum(operations), 0) FROM usage WHERE day >= ?", [_month_start()]
        ).fetchone()
        return int(row[0]) if row else 0

    def usage(self) -> dict[str, Any]:
        """This month's operations against the plan's limit, by source and by day."""
        quota = self.quota()
        start = _month_start()
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

    def usage_by_day_and_source(self) -> list[dict[str, Any]]:
        """This month's operations per day and source, oldest first."""
        rows = self.con.execute(
            "SELECT day, source, sum(operations) FROM usage WHERE day >= ? "
            "GROUP BY day, source ORDER BY day, source",
            [_month_start()],
        ).fetchall()
        return [{"day": r[0].isoformat(), "source": r[1], "operations": int(r[2])} for r in rows]


def _month_start() -> date:
    """The first day of this calendar month in UTC: quotas count per month."""
    return now().date().replace(day=1)
