"""Events in ClickHouse; projects, the catalog of names seen and the log of user and group
properties stay in the catalog file.

A batch (:meth:`ClickHouseEvents.begin` ... :meth:`~ClickHouseEvents.commit`) inserts its
events into ClickHouse tagged with its ``batch_id``, and its names and the property states
it left into the catalog's open transaction; the commit records the batch as the last committed one
(``clickhouse_events_batch``) in that same transaction. A rollback deletes the batch's
events. A crash between the insert and the commit leaves events of a batch above the
last committed one: they are deleted when the store is opened next, before anything
reads them, so a retried batch is neither lost nor stored twice, and its ``insert_id`` s
are not taken for duplicates (the dedup index only ever reads committed batches).
"""

from __future__ import annotations

from contextlib import suppress
from datetime import UTC, datetime

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from profilesync.events.fields import FIELDS
from profilesync.store.clickhouse.cluster import Layout
from profilesync.store.clickhouse.driver import Driver, quote_name
from profilesync.store.clickhouse.schema import EVENT_COLUMNS, EVENTS
from profilesync.store.duckdb.events import DuckDBEvents
from profilesync.store.protocol import Project

#: the setting holding the last committed batch
COMMITTED = "clickhouse_events_batch"


class ClickHouseEvents:
    """The events part of the store protocol: rows in ClickHouse, the rest in the catalog."""

    relation = EVENTS

    def __init__(
        self, con: duckdb.DuckDBPyConnection, driver: Driver, layout: Layout | None = None
    ) -> None:
        self.con = con
        self.driver = driver
        self.layout = layout or Layout()
        self.catalog_part = DuckDBEvents(con)  # projects, batch ids and names seen
        self.batch = 0  # the largest batch appended in the open transaction

    def add_new_fields(self) -> None:
        """Columns for the event fields a table made by an older version lacks."""
        listed = self.driver.query_arrow(
            "SELECT name FROM system.columns WHERE database = currentDatabase() "
            f"AND table = '{self.layout.local(EVENTS)}'"
        )
        have = set(listed.column("name").to_pylist()) if listed.num_columns else set()
        for name, kind in EVENT_COLUMNS.items():
            if name not in have:
                added = f"ADD COLUMN IF NOT EXISTS {quote_name(name)} {kind}"
                for statement in self.layout.alter(EVENTS, added):
                    self.driver.execute(statement)

    def clean_up(self) -> int:
        """Delete events of batches that never committed (a crash's); how many there were."""
        committed = self._committed()
        left = (
            self.driver.query_arrow(
                f"SELECT count() AS n FROM {EVENTS} WHERE batch_id > {{b:Int64}}", {"b": committed}
            )
            .column("n")[0]
            .as_py()
        )
        if left:
            for statement in self.layout.delete(EVENTS, "batch_id > {b:Int64}"):
                self.driver.execute(statement, {"b": committed})
        return int(left)

    def _committed(self) -> int:
        row = self.con.execute("SELECT value FROM settings WHERE key = ?", [COMMITTED]).fetchone()
        return int(row[0]) if row and row[0] else 0

    # -- projects and the catalog: the catalog file's ------------------------------------
    def store_id(self) -> str:
        return self.catalog_part.store_id()

    def add_project(self, name: str, key_hash: str, key_hint: str) -> Project:
        return self.catalog_part.add_project(name, key_hash, key_hint)

    def list_projects(self) -> list[Project]:
        return self.catalog_part.list_projects()

    def find_project(self, name: str) -> Project | None:
        return self.catalog_part.find_project(name)

    def project_by_key_hash(self, key_hash: str) -> Project | None:
        return self.catalog_part.project_by_key_hash(key_hash)

    def set_project_key(self, project_id: int, key_hash: str, key_hint: str) -> None:
        self.catalog_part.set_project_key(project_id, key_hash, key_hint)

    def catalog(self, project_id: int | None) -> list[tuple[str, str, list[str]]]:
        return self.catalog_part.catalog(project_id)

    def delete_project(self, project_id: int) -> int:
        """Delete a project's events, then the project and its names; the events deleted.
        A crash in between leaves the project without some events: deleting it again
        finishes the job."""
        where, params = "project_id = {p:Int64}", {"p": project_id}
        count = self.driver.query_arrow(
            f"SELECT count() AS n FROM {EVENTS} WHERE {where}", params
        ).column("n")[0]
        for statement in self.layout.delete(EVENTS, where):
            self.driver.execute(statement, params)
        with _transaction(self.con):
            self.con.execute("DELETE FROM event_catalog WHERE project_id = ?", [project_id])
            self.con.execute("DELETE FROM event_property_states WHERE project_id = ?", [project_id])
            self.con.execute("DELETE FROM projects WHERE id = ?", [project_id])
        return int(count.as_py())

    # -- appending ---------------------------------------------------------------------
    def begin(self) -> None:
        self.con.execute("BEGIN TRANSACTION")
        self.batch = 0

    def next_batch_id(self) -> int:
        return self.catalog_part.next_batch_id()

    def recent_ids(self, since_batch: int, cutoff: datetime) -> tuple[pa.Table, int]:
        params = {"b": since_batch, "c": _naive(cutoff).isoformat(sep=" ")}
        table = self.driver.query_arrow(
            "SELECT insert_id, device_id, project_id, "
            "toUnixTimestamp64Milli(received_at) AS received_ms "
            f"FROM {EVENTS} WHERE batch_id > {{b:Int64}} AND insert_id IS NOT NULL "
            "AND received_at >= toDateTime64({c:String}, 6)",
            params,
        )
        if not table.num_columns:
            table = pa.table(
                {
                    "insert_id": pa.array([], pa.string()),
                    "device_id": pa.array([], pa.string()),
                    "project_id": pa.array([], pa.int64()),
                    "received_ms": pa.array([], pa.int64()),
                }
            )
        return table, max(since_batch, self._committed())

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
        rows = events.num_rows
        columns = {"project_id": pa.array([project_id] * rows, pa.int64())}
        for name in FIELDS:  # fields no event of the batch has are left NULL: cheaper
            if name in events.column_names and events.column(name).null_count < rows:
                columns[name] = events.column(name)
        columns["time"] = pc.coalesce(
            events.column("time").cast(pa.timestamp("us")), pa.scalar(received, pa.timestamp("us"))
        )
        columns["received_at"] = pa.array([received] * rows, pa.timestamp("us"))
        columns["batch_id"] = pa.array([batch_id] * rows, pa.int64())
        self.batch = max(self.batch, batch_id)
        if rows:
            self.driver.insert_arrow(EVENTS, list(columns), pa.table(columns))
        # remember the event types and property names seen, for the query pickers
        self.con.register("_seen_names", catalog)
        try:
            self.con.execute(
                """INSERT INTO event_catalog SELECT ?, n.event_type, n.kind, n.name, ?
                FROM _seen_names n WHERE NOT EXISTS (SELECT 1 FROM event_catalog c
                    WHERE c.project_id = ? AND c.event_type = n.event_type AND c.kind = n.kind
                    AND c.name = n.name)""",
                [project_id, received, project_id],
            )
        finally:
            self.con.unregister("_seen_names")

    # -- user and group property states: the catalog file's, committed with the batch ----
    def property_states(self, kind: str, since_batch: int) -> tuple[pa.Table, int]:
        return self.catalog_part.property_states(kind, since_batch)

    def add_property_states(self, kind: str, states: pa.Table, *, batch_id: int) -> None:
        self.catalog_part.add_property_states(kind, states, batch_id=batch_id)

    def commit(self) -> None:
        if self.batch:
            self.con.execute("DELETE FROM settings WHERE key = ?", [COMMITTED])
            self.con.execute(
                "INSERT INTO settings VALUES (?, ?)",
                [COMMITTED, str(max(self.batch, self._committed()))],
            )
        self.con.execute("COMMIT")

    def rollback(self) -> None:
        """Roll back the open batch and delete its events; nothing when none is open."""
        with suppress(duckdb.Error):  # no transaction was open
            self.con.execute("ROLLBACK")
        if self.batch:
            self.batch = 0
            self.clean_up()


class _transaction:
    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def __enter__(self) -> None:
        self.con.execute("BEGIN TRANSACTION")

    def __exit__(self, kind: object, *exc: object) -> None:
        self.con.execute("ROLLBACK" if kind else "COMMIT")


def _naive(moment: datetime) -> datetime:
    """Events keep UTC wall-clock times: ``time``, ``received_at``, ``first_seen``."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment
