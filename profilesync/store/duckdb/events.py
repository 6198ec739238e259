"""Events, projects and the event catalog in the store file, next to the profiles they
are joined with (the tables are made by migrations 2 and 4, see :mod:`.schema`).

A project's API key is stored as a SHA-256 hash (the events domain makes it); appends run
in a batch transaction the caller opens with :meth:`DuckDBEvents.begin`, which also logs
the user and group properties the batch left (``event_property_states``: the newest row
of a user or group is its current properties, see :mod:`profilesync.events.userprops`).
"""

from __future__ import annotations

from contextlib import suppress
from datetime import UTC, datetime

import duckdb
import pyarrow as pa

from profilesync.mapping import quote
from profilesync.model import now
from profilesync.store.protocol import Project

#: the event columns a batch brings, in table order (``profilesync.events.fields.FIELDS``)
_BATCH_COLUMNS = (
    "event_type",
    "user_id",
    "device_id",
    "time",
    "event_properties",
    "user_properties",
    "insert_id",
    "session_id",
    "app_version",
    "platform",
    "os_name",
    "device_model",
    "country",
    "region",
    "city",
    "language",
    "ip",
    "revenue",
    "price",
    "quantity",
    "productId",
    "revenueType",
    "currency",
    "groups",
    "group_properties",
    "skip_user_properties_sync",
    "os_version",
    "device_brand",
    "device_manufacturer",
    "carrier",
    "dma",
    "version_name",
    "library",
    "user_agent",
    "partner_id",
    "idfa",
    "idfv",
    "adid",
    "android_id",
    "android_app_set_id",
    "location_lat",
    "location_lng",
    "event_id",
    "plan",
    "ingestion_metadata",
)
_PROJECT = "SELECT id, name, key_hint, created_at FROM projects"


class DuckDBEvents:
    """The events part of the store protocol, over the store's connection."""

    relation = "events"

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self._store_id = ""

    def store_id(self) -> str:
        """A random id made with the events tables: a file deleted and re-created gets a new one."""
        if not self._store_id:  # fixed for the file this connection has open
            row = self.con.execute(
                "SELECT value FROM settings WHERE key = 'events_store_id'"
            ).fetchone()
            self._store_id = str(row[0]) if row else ""
        return self._store_id

    # -- projects ----------------------------------------------------------------------
    def add_project(self, name: str, key_hash: str, key_hint: str) -> Project:
        # past the largest id too: a sequence used but not checkpointed can restart after
        # a reopen (DuckDB replays its log without the sequence's value)
        row = self.con.execute(
            "SELECT greatest(nextval('project_ids'), (SELECT coalesce(max(id), 0) + 1 FROM projects))"
        ).fetchone()
        assert row is not None
        self.con.execute(
            "INSERT INTO projects VALUES (?, ?, ?, ?, ?)", [row[0], name, key_hash, key_hint, now()]
        )
        project = self.find_project(name)
        assert project is not None
        return project

    def list_projects(self) -> list[Project]:
        return [Project(*r) for r in self.con.execute(f"{_PROJECT} ORDER BY name").fetchall()]

    def find_project(self, name: str) -> Project | None:
        row = self.con.execute(f"{_PROJECT} WHERE name = ?", [name]).fetchone()
        return Project(*row) if row else None

    def project_by_key_hash(self, key_hash: str) -> Project | None:
        row = self.con.execute(f"{_PROJECT} WHERE key_hash = ?", [key_hash]).fetchone()
        return Project(*row) if row else None

    def set_project_key(self, project_id: int, key_hash: str, key_hint: str) -> None:
        self.con.execute(
            "UPDATE projects SET key_hash = ?, key_hint = ? WHERE id = ?",
            [key_hash, key_hint, project_id],
        )

    def delete_project(self, project_id: int) -> int:
        """Delete a project with all its events and catalog, together; the events deleted."""
        self.con.execute("BEGIN TRANSACTION")
        try:
            row = self.con.execute(
                "SELECT count(*) FROM events WHERE project_id = ?", [project_id]
            ).fetchone()
            self.con.execute("DELETE FROM events WHERE project_id = ?", [project_id])
            self.con.execute("DELETE FROM event_catalog WHERE project_id = ?", [project_id])
            self.con.execute("DELETE FROM event_property_states WHERE project_id = ?", [project_id])
            self.con.execute("DELETE FROM projects WHERE id = ?", [project_id])
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")
        return int(row[0]) if row else 0

    # -- appending ---------------------------------------------------------------------
    def begin(self) -> None:
        self.con.execute("BEGIN TRANSACTION")

    def commit(self) -> None:
        self.con.execute("COMMIT")

    def rollback(self) -> None:
        """Roll back the open batch; nothing happens when none is open."""
        with suppress(duckdb.Error):  # no transaction was open
            self.con.execute("ROLLBACK")

    def next_batch_id(self) -> int:
        row = self.con.execute("SELECT nextval('event_batches')").fetchone()
        assert row is not None
        return int(row[0])

    def recent_ids(self, since_batch: int, cutoff: datetime) -> tuple[pa.Table, int]:
        table = self.con.execute(
            "SELECT insert_id, device_id, project_id, epoch_ms(received_at) AS received_ms "
            "FROM events "
            "WHERE batch_id > ? AND insert_id IS NOT NULL AND received_at >= ?",
            [since_batch, _naive(cutoff)],
        ).to_arrow_table()
        row = self.con.execute(
            "SELECT coalesce(max(batch_id), 0) FROM events WHERE batch_id > ?", [since_batch]
        ).fetchone()
        return table, max(since_batch, int(row[0]) if row else 0)

    def append(
        self,
        project_id: int,
        events: pa.Table,
        catalog: pa.Table,
        *,
        batch_id: int,
        received_at: datetime,
    ) -> None:
        """Insert valid events (without ``time``: received now) and the names they bring."""
        received = _naive(received_at)
        # columns no event of the batch has are left to their default (NULL): cheaper
        sent = [
            c
            for c in _BATCH_COLUMNS
            if c == "time"
            or (c in events.column_names and events.column(c).null_count < len(events))
        ]
        cols = ", ".join(quote(c) for c in sent)
        values = ", ".join("coalesce(time, ?)" if c == "time" else quote(c) for c in sent)
        self.con.register("_incoming", events)
        self.con.register("_seen_names", catalog)
        try:
            self.con.execute(
                f"INSERT INTO events (project_id, {cols}, received_at, batch_id) "
                f"SELECT ?, {values}, ?, ? FROM _incoming",
                [project_id, received, received, batch_id],
            )
            if not catalog.num_rows:
                return
            # remember the event types and property names seen, for the query pickers
            self.con.execute(
                """INSERT INTO event_catalog SELECT ?, n.event_type, n.kind, n.name, ?
                FROM _seen_names n WHERE NOT EXISTS (SELECT 1 FROM event_catalog c
                    WHERE c.project_id = ? AND c.event_type = n.event_type AND c.kind = n.kind
                    AND c.name = n.name)""",
                [project_id, received, project_id],
            )
        finally:
            self.con.unregister("_incoming")
            self.con.unregister("_seen_names")

    # -- user and group property states ------------------------------------------------
    def property_states(self, kind: str, since_batch: int) -> tuple[pa.Table, int]:
        """The newest properties (``project_id``, ``scope``, ``id``, ``properties``) of
        every user or group (``kind``) written after ``since_batch``; the last batch seen."""
        table = self.con.execute(
            "SELECT project_id, scope, id, arg_max({'p': properties}, batch_id).p AS properties "
            "FROM event_property_states WHERE kind = ? AND batch_id > ? GROUP BY ALL",
            [kind, since_batch],
        ).to_arrow_table()
        row = self.con.execute(
            "SELECT coalesce(max(batch_id), 0) FROM event_property_states "
            "WHERE kind = ? AND batch_id > ?",
            [kind, since_batch],
        ).fetchone()
        return table, max(since_batch, int(row[0]) if row else 0)

    def add_property_states(self, kind: str, states: pa.Table, *, batch_id: int) -> None:
        """Log the properties a batch left (``project_id``, ``scope``, ``id``,
        ``properties``; NULL properties: none left), in the open transaction."""
        self.con.register("_states", states)
        try:
            self.con.execute(
                "INSERT INTO event_property_states "
                "SELECT ?, project_id, scope, id, properties, ? FROM _states",
                [kind, batch_id],
            )
        finally:
            self.con.unregister("_states")

    def catalog(self, project_id: int | None) -> list[tuple[str, str, list[str]]]:
        """``(kind, name, event types)`` of every property name seen (kinds ``event`` and
        ``user``) in one project or all, by kind and name."""
        where, params = ("AND project_id = ?", [project_id]) if project_id is not None else ("", [])
        rows = self.con.execute(
            "SELECT kind, name, list(DISTINCT event_type ORDER BY event_type) FROM event_catalog "
            f"WHERE kind <> 'type' {where} GROUP BY kind, name ORDER BY kind, name",
            params,
        ).fetchall()
        return [(str(r[0]), str(r[1]), list(r[2])) for r in rows]


def _naive(moment: datetime) -> datetime:
    """Events keep UTC wall-clock times (TIMESTAMP): ``received_at``, ``first_seen``."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment
