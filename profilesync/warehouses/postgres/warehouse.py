"""PostgreSQL tables read by logical decoding, with ``psycopg`` 3 and ``wal2json``.

Every CDC source owns one logical replication slot, ``profilesync_<source>``, with the
``wal2json`` output plugin (format version 2). Its life:

* **First sync and ``--resync``** (``snapshot``): the slot is (re)created over a
  replication connection with ``CREATE_REPLICATION_SLOT ... LOGICAL wal2json`` exporting a
  snapshot, and the table is read in a ``REPEATABLE READ`` transaction that imports it
  (``SET TRANSACTION SNAPSHOT``). This is how Postgres' own logical replication copies a
  table: the exported snapshot holds exactly the transactions that committed before the
  slot's consistent point, and the slot decodes exactly those that commit after it, so no
  change is lost or read twice. (Creating the slot and *then* reading "the latest" data
  is not consistent: a transaction whose commit record precedes the position read may
  still be invisible to the snapshot.) The checkpoint is the consistent point.
* **Later syncs** (``changes``): the slot is *peeked* (``pg_logical_slot_peek_changes``),
  never consumed, so a crash before the store commits loses nothing. The checkpoint
  becomes the end of the last decoded commit. Only at the start of the *next* sync is the
  slot advanced to the committed checkpoint (``pg_replication_slot_advance``); a crash
  between the store's commit and that advance just means the next run peeks those
  changes again and drops every transaction that committed at or before its checkpoint.
  The slot therefore keeps the WAL of one sync window more than strictly needed.
* **``profilesync source delete``** (``release``) drops the slot. An abandoned slot keeps
  every WAL segment written after it on the server's disk.
* **Snapshot diffs** (``--strategy diff``, queries with joins) and previews read the
  current rows in one ``REPEATABLE READ`` transaction and create no slot
  (``diff_snapshot``; the engine calls it for diff sources).

The JSON that wal2json writes is parsed in DuckDB and every value is converted from
Postgres' text form by the same SQL casts as a snapshot, so snapshot and change values are
identical. Both ways stream in bounded memory: a peeked window is staged in a scratch
DuckDB with the sync's memory limit, spilling to disk past it, and read back in batches;
a snapshot is typed one COPY block at a time. Drop-and-replace shows as a different relation OID; a slot
that is gone or invalidated (``wal_status = 'lost'``, see ``max_slot_wal_keep_size``)
needs a resync.

This module ties the parts together: ``catalog`` (relations, columns, replica identity),
``slot`` (create / peek / advance / drop), ``snapshot`` (exported snapshot + COPY to Arrow),
``wal2json`` (decoding changes), ``checks`` (one inspection, pure rules).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa

from profilesync.errors import (
    ConfigurationError,
    NotFoundError,
    TableReplacedError,
    WarehouseUnavailableError,
    resync_fixes,
)
from profilesync.mapping import QUERY_TABLE
from profilesync.model import Checkpoint, Connection, Mapping
from profilesync.warehouses.postgres import catalog
from profilesync.warehouses.postgres.catalog import Relation
from profilesync.warehouses.postgres.checks import PostgresInspection, inspect, judge
from profilesync.warehouses.postgres.driver import (
    SESSION,
    errors,
    first_line,
    psycopg_module,
    scalar,
)
from profilesync.warehouses.postgres.slot import Slot, slot_name
from profilesync.warehouses.postgres.snapshot import import_snapshot, read_rows
from profilesync.warehouses.postgres.spec import SPEC
from profilesync.warehouses.postgres.wal2json import decode
from profilesync.warehouses.protocol import Changes, Check
from profilesync.warehouses.spec import ConfigSpec, FromSpec

if TYPE_CHECKING:
    import duckdb
    import psycopg


class PostgresWarehouse(FromSpec):
    kind: ClassVar[str] = "postgres"
    dialect: ClassVar[str] = "postgres"
    supports_cdc: ClassVar[bool] = True
    supports_query: ClassVar[bool] = True
    holds_server_resources: ClassVar[bool] = True
    spec: ClassVar[ConfigSpec] = SPEC

    def __init__(self, connection: Connection, source_name: str = "") -> None:
        self.dsn: str = connection.config["dsn"]
        self.password: str | None = connection.config.get("password")
        self.source_name = source_name
        self._open: list[psycopg.Connection[Any]] = []

    @property
    def slot(self) -> str:
        return self._slot.name

    @property
    def _slot(self) -> Slot:
        if not self.source_name:
            raise ConfigurationError(
                "a postgres replication slot is named after its source: no source name given"
            )
        return Slot(slot_name(self.source_name), self.source_name)

    # -- connections -----------------------------------------------------------------------
    def connect(self, *, replication: bool = False) -> psycopg.Connection[Any]:
        """An autocommit session in UTC; ``replication`` opens a walsender session."""
        psycopg = psycopg_module()
        extra: dict[str, Any] = {"replication": "database"} if replication else {}
        if self.password:
            extra["password"] = self.password
        try:
            conn = psycopg.connect(self.dsn, autocommit=True, **extra)
        except psycopg.OperationalError as exc:
            raise WarehouseUnavailableError(
                f"could not connect to PostgreSQL: {first_line(exc)}. Check the connection's "
                "--dsn and that the server accepts connections from here",
                ui_fix="Check the connection's connection string and that the server accepts "
                "connections from here",
            ) from None
        self._open.append(conn)
        if not replication:
            conn.execute(SESSION)
        return conn

    @contextmanager
    def session(self) -> Iterator[psycopg.Connection[Any]]:
        """A session for one call, closed at its end; driver errors become ours."""
        with errors():
            conn = self.connect()
            try:
                yield conn
            finally:
                conn.close()

    def close(self) -> None:
        for conn in self._open:
            conn.close()
        self._open.clear()

    # -- discovery -----------------------------------------------------------------------
    def list_tables(self) -> list[str]:
        with self.session() as conn:
            return catalog.list_tables(conn)

    def table_schema(self, table: str) -> pa.Schema:
        with self.session() as conn:
            relation = catalog.find_relation(conn, table)
        return pa.schema([pa.field(c.name, c.arrow) for c in relation.columns])

    def relation(self, conn: psycopg.Connection[Any], table: str) -> Relation:
        """The table ``schema.table`` (or a bare name on the search path) in the catalog."""
        return catalog.find_relation(conn, table)

    def slot_state(self, conn: psycopg.Connection[Any]) -> dict[str, Any] | None:
        """The slot's row of ``pg_replication_slots`` (None when it does not exist)."""
        return self._slot.state(conn)

    # -- test mapping ----------------------------------------------------------------------
    def inspect(self, mapping: Mapping, strategy: str = "cdc") -> PostgresInspection:
        """All the I/O "Test mapping" needs for ``strategy``, once (at most one test slot)."""
        if mapping.table == QUERY_TABLE:
            return PostgresInspection(mapping)
        with self.session() as conn:
            return inspect(conn, mapping, strategy, lambda: self._slot, self._try_replication)

    def judge(
        self, inspection: PostgresInspection, frequency_seconds: int, strategy: str
    ) -> list[Check]:
        """The checks for ``inspection``; the server is not asked again."""
        return judge(inspection, frequency_seconds, strategy)

    def check(self, mapping: Mapping, frequency_seconds: int, strategy: str) -> list[Check]:
        return self.judge(self.inspect(mapping, strategy), frequency_seconds, strategy)

    def _try_replication(self) -> None:
        self.connect(replication=True).close()

    # -- reading ---------------------------------------------------------------------------
    def snapshot(self, mapping: Mapping, limit: int | None = None) -> Changes:
        """A table's first sync or resync (re)creates the slot; a preview or a query does not."""
        if mapping.table == QUERY_TABLE or limit is not None:
            return self.diff_snapshot(mapping, limit)
        with errors(), self._reading() as conn:
            return self._snapshot_at_slot(conn, mapping)

    def diff_snapshot(self, mapping: Mapping, limit: int | None = None) -> Changes:
        """The current rows without a replication slot (snapshot diff, previews, queries)."""
        with errors(), self._reading() as conn:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            lsn = scalar(conn, "SELECT pg_current_wal_lsn()::text")
            if mapping.table == QUERY_TABLE:
                assert mapping.query is not None
                query = mapping.query.strip().rstrip(";")  # it runs as a subquery
                columns = catalog.query_columns(conn, query)
                source, identity = f"({query}) AS q", "query"
            else:
                relation = catalog.find_relation(conn, mapping.table)
                columns, source, identity = relation.columns, relation.qualified, str(relation.oid)
            return read_rows(conn, mapping, columns, source, limit, Checkpoint(lsn, identity))

    @contextmanager
    def _reading(self) -> Iterator[psycopg.Connection[Any]]:
        """A session a returned reader goes on using (it closes it); closed here on failure."""
        conn = self.connect()
        try:
            yield conn
        except BaseException:
            conn.close()
            raise

    def _snapshot_at_slot(self, conn: psycopg.Connection[Any], mapping: Mapping) -> Changes:
        slot = self._slot
        slot.drop(conn)  # a resync starts the stream again at its own snapshot
        replication = self.connect(replication=True)
        try:
            point, snapshot = slot.create(replication)
            import_snapshot(conn, snapshot)
        finally:
            # the imported snapshot lives on in conn's transaction
            replication.close()
        relation = catalog.find_relation(conn, mapping.table)
        checkpoint = Checkpoint(point, str(relation.oid), {"slot": slot.name})
        return read_rows(conn, mapping, relation.columns, relation.qualified, None, checkpoint)

    def changes(self, mapping: Mapping, checkpoint: Checkpoint) -> Changes:
        slot = self._slot

        def peek(into: duckdb.DuckDBPyConnection) -> Relation:
            with self.session() as conn:
                relation = self._same_table(conn, mapping.table, checkpoint)
                slot.advance(conn, checkpoint)
                slot.peek(conn, relation, into)
                self._same_table(conn, mapping.table, checkpoint)  # replaced while we peeked?
            return relation

        return decode(peek, mapping, checkpoint, self.source_name)

    def _same_table(
        self, conn: psycopg.Connection[Any], table: str, checkpoint: Checkpoint
    ) -> Relation:
        try:
            relation = catalog.find_relation(conn, table)
        except NotFoundError:
            raise NotFoundError(
                f"table {table} no longer exists in PostgreSQL (it was dropped). Nothing was applied. "
                f"When it exists again, run `profilesync sync {self.source_name} --resync`",
                **resync_fixes(self.source_name),
            ) from None
        if str(relation.oid) != checkpoint.identity:
            raise TableReplacedError(
                f"table {table} was dropped and re-created (relation OID changed from "
                f"{checkpoint.identity} to {relation.oid}), as a dbt full refresh or CREATE OR REPLACE "
                "does. Nothing was applied. CDC needs incremental models; run "
                f"`profilesync sync {self.source_name} --resync` to diff the new table against the store.",
                **resync_fixes(self.source_name),
            )
        return relation

    def release(self, mapping: Mapping) -> None:
        """Drop this source's slot so the server stops keeping WAL for it."""
        with self.session() as conn:
            self._slot.drop(conn)


#: the name before warehouses got a folder each; kept for one release
PostgresSource = PostgresWarehouse
