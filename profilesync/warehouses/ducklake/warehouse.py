"""DuckLake tables, read by change data capture between snapshot ids.

A connection is a DuckLake catalog (a DuckDB file, or a ``postgres:...`` connection
string) and the directory of its data files. The ``ducklake`` extension is loaded from
the file shipped in the ``duckdb-extension-ducklake`` wheel, never installed from the
network. Snapshots read ``AT (VERSION => id)``; changes are the insertions and
deletions DuckLake records per snapshot (what ``table_changes`` returns) after the
checkpoint's snapshot id. The table's uuid is its identity: a dropped and re-created
table gets a new one, while ``table_changes`` would silently return only the new
table's rows.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import duckdb
import pyarrow as pa

from profilesync.errors import (
    EDIT_SOURCE,
    ConfigurationError,
    NotFoundError,
    RetentionExceededError,
    TableReplacedError,
    UiFix,
    WarehouseUnavailableError,
)
from profilesync.mapping import QUERY_TABLE, quote
from profilesync.model import Checkpoint, Connection, Mapping
from profilesync.sandbox import lock_down
from profilesync.warehouses.duckdb.warehouse import (
    DuckDBWarehouse,
    arrow_reader,
    extension_file,
    load,
    offline_connect,
    split_table,
)
from profilesync.warehouses.ducklake.checks import EXPIRE_OPTION, LakeInspection, judge
from profilesync.warehouses.ducklake.spec import SPEC
from profilesync.warehouses.protocol import (
    DELETE,
    OP,
    ORD,
    UPSERT,
    Changes,
    Check,
    change_schema,
    empty_reader,
)
from profilesync.warehouses.rules import expired_error, replaced_error
from profilesync.warehouses.spec import ConfigSpec

#: catalog string prefix -> (DuckDB extension, wheel package shipping it)
_CATALOG_EXTENSIONS = {"postgres:": ("postgres_scanner", "duckdb-extension-postgres-scanner")}


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class _Attachments:
    """One locked-down DuckDB instance per lake, shared by the sources reading it.

    A lake is attached read-only while at least one source reads it, and its instance is
    closed after the last one is done: a DuckDB catalog file stays locked against writers
    while it is attached, and DuckDB refuses a second attachment of one file in one
    process. Each instance is locked down once its lake is attached, so a query reaches
    the catalog and the data files and nothing else. DuckDB refuses to attach a Postgres
    catalog once external access is off, so a locked instance never attaches again: the
    next read opens a new one (verifying the extension's signature costs about 0.3 s, once
    per sync rather than per query).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lakes: dict[tuple[str, str | None], tuple[duckdb.DuckDBPyConnection, str, int]] = {}
        self._ids = itertools.count(1)

    def attach(
        self,
        key: tuple[str, str | None],
        attach: Callable[[duckdb.DuckDBPyConnection, str], None],
    ) -> tuple[str, duckdb.DuckDBPyConnection]:
        """The alias ``key`` is attached under (attaching it if needed) and a new cursor."""
        with self._lock:
            db, alias, users = self._lakes.get(key) or self._open(attach)
            self._lakes[key] = (db, alias, users + 1)
            return alias, db.cursor()

    def _open(
        self, attach: Callable[[duckdb.DuckDBPyConnection, str], None]
    ) -> tuple[duckdb.DuckDBPyConnection, str, int]:
        db = offline_connect()
        alias = f"lake_{next(self._ids)}"
        try:
            load(db, "ducklake", "duckdb-extension-ducklake")
            attach(db, alias)
        except BaseException:
            db.close()
            raise
        return db, alias, 0

    def release(self, key: tuple[str, str | None]) -> None:
        with self._lock:
            db, alias, users = self._lakes.pop(key, (None, "", 0))
            if db is not None and users > 1:
                self._lakes[key] = (db, alias, users - 1)
            elif db is not None:
                db.close()


_LAKES = _Attachments()


class DuckLakeWarehouse(DuckDBWarehouse):
    """Tables of one DuckLake (``--kind ducklake --catalog PATH --data-path DIR``)."""

    kind: ClassVar[str] = "ducklake"
    dialect: ClassVar[str] = "duckdb"
    supports_cdc: ClassVar[bool] = True
    supports_query: ClassVar[bool] = True
    holds_server_resources: ClassVar[bool] = False
    spec: ClassVar[ConfigSpec] = SPEC

    def __init__(self, connection: Connection, source_name: str = "") -> None:
        self.catalog = str(connection.config["catalog"])
        self.data_path: str | None = connection.config.get("data_path")
        self.path = Path(self.catalog)
        self.source_name = source_name
        self._con: duckdb.DuckDBPyConnection | None = None
        self._alias: str | None = None

    # -- the connection ----------------------------------------------------------------
    @property
    def alias(self) -> str:
        """The name the lake is attached under in this process's DuckDB instance."""
        if self._alias is None:
            self._open()
        assert self._alias is not None
        return self._alias

    @property
    def meta(self) -> str:
        return f"__ducklake_metadata_{self.alias}"

    def _open(self) -> duckdb.DuckDBPyConnection:
        key = (self.catalog, self.data_path)
        self._alias, con = _LAKES.attach(key, self._attach)
        try:
            con.execute(f"USE {self._alias}")  # a query's table names resolve inside the lake
        except BaseException:
            self.close()
            raise
        self._con = con
        return con

    def _attach(self, con: duckdb.DuckDBPyConnection, alias: str) -> None:
        """Load, attach, then lock down: only the catalog and the data files stay in reach."""
        for prefix, (name, package) in _CATALOG_EXTENSIONS.items():
            if self.catalog.startswith(prefix):
                load(con, name, package)
        try:
            con.execute(
                f"ATTACH {_sql_text('ducklake:' + self.catalog)} AS {alias} ({self._attach_options()})"
            )
        except duckdb.Error as exc:
            raise self._attach_error(exc) from exc
        # DuckDB lists its extension directory for duckdb_extensions(): make that the wheel's
        wheels = str(Path(extension_file("ducklake", "duckdb-extension-ducklake")).parents[1])
        con.execute(f"SET extension_directory = {_sql_text(wheels)}")
        files = () if self.catalog.startswith(tuple(_CATALOG_EXTENSIONS)) else (self.catalog,)
        dirs = [wheels, *([self.data_path] if self.data_path else [])]
        lock_down(con, allowed_dirs=dirs, allowed_paths=[*files, *(f"{f}.wal" for f in files)])

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None
        if self._alias is not None:
            _LAKES.release((self.catalog, self.data_path))
            self._alias = None

    def _attach_options(self) -> str:
        options = ["READ_ONLY"]
        if self.data_path:
            # the catalog may hold a relative or moved data path; this one is where the files are
            path = self.data_path.rstrip("/") + "/"
            options += [f"DATA_PATH {_sql_text(path)}", "OVERRIDE_DATA_PATH true"]
        return ", ".join(options)

    def _attach_error(self, exc: duckdb.Error) -> Exception:
        text = str(exc)
        if "lock" in text.lower():
            return WarehouseUnavailableError(
                f"the DuckLake catalog {self.catalog} is open for writing in another process: a DuckDB "
                "catalog file allows one writer or many readers. Let the writer finish (or move the "
                "catalog to Postgres for concurrent access) and sync again."
            )
        return ConfigurationError(
            f"cannot attach the DuckLake catalog {self.catalog}: {text.splitlines()[0]}"
        )

    def qualified(self, table: str) -> str:
        schema, name = split_table(table)
        return f"{self.alias}.{quote(schema)}.{quote(name)}"

    # -- discovery -------------------------------------------------------------------
    def list_tables(self) -> list[str]:
        rows = self.con.execute(
            f"""SELECT schema_name || '.' || table_name FROM duckdb_tables() WHERE database_name = '{self.alias}'
                UNION SELECT schema_name || '.' || view_name FROM duckdb_views()
                WHERE database_name = '{self.alias}' ORDER BY 1"""
        ).fetchall()
        return [str(r[0]) for r in rows]

    def current_snapshot(self) -> int:
        row = self.con.execute(f"SELECT id FROM {self.alias}.current_snapshot()").fetchone()
        assert row is not None
        return int(row[0])

    def table_identity(self, table: str, snapshot: int) -> str:
        """The table's uuid at ``snapshot``; NotFoundError when no such table exists then."""
        schema, name = split_table(table)
        row = self.con.execute(
            f"""SELECT t.table_uuid FROM {self.meta}.ducklake_table t
                JOIN {self.meta}.ducklake_schema s ON s.schema_id = t.schema_id
                WHERE s.schema_name = $schema AND t.table_name = $name
                  AND $snap >= t.begin_snapshot AND (t.end_snapshot IS NULL OR $snap < t.end_snapshot)
                  AND $snap >= s.begin_snapshot AND (s.end_snapshot IS NULL OR $snap < s.end_snapshot)""",
            {"schema": schema, "name": name, "snap": snapshot},
        ).fetchone()
        if row is None:
            raise NotFoundError(
                f"DuckLake table {table!r} not found in {self.catalog} at snapshot {snapshot} "
                f"(tables there: {', '.join(self.list_tables()) or 'none'})"
            )
        return str(row[0])

    # -- test mapping ----------------------------------------------------------------
    def inspect(self, mapping: Mapping, strategy: str = "cdc") -> LakeInspection:
        """Everything "Test mapping" reads of the lake for ``strategy``, in one go."""
        if mapping.table == QUERY_TABLE:
            return LakeInspection(mapping, query_error=self._query_error(mapping))
        if self.is_view(mapping.table):
            return LakeInspection(mapping, is_view=True)
        snapshot = self.current_snapshot()
        identity = self.table_identity(mapping.table, snapshot)
        found = LakeInspection(mapping, snapshot=snapshot, identity=identity)
        if strategy == "diff":
            return replace(found, rows=self._count(mapping.table))
        expire = self.expire_older_than(mapping.table)
        oldest = self.oldest_snapshot()
        seconds = None if expire is None else self._interval_seconds(expire)
        return replace(found, expire=expire, expire_seconds=seconds, oldest_snapshot=oldest)

    def judge(self, inspection: Any, frequency_seconds: int, strategy: str) -> list[Check]:
        """The checks for ``inspection``; the lake is not read again."""
        return judge(inspection, frequency_seconds, strategy)

    def is_view(self, table: str) -> bool:
        schema, name = split_table(table)
        row = self.con.execute(
            "SELECT count(*) FROM duckdb_views() WHERE database_name = ? AND schema_name = ? AND view_name = ?",
            [self.alias, schema, name],
        ).fetchone()
        return bool(row and row[0])

    def expire_older_than(self, table: str) -> str | None:
        """The most specific ``expire_older_than`` option for ``table`` (table, schema, lake)."""
        schema, name = split_table(table)
        rows = self.con.execute(
            f"SELECT scope, scope_entry, value FROM {self.alias}.options() WHERE option_name = ?",
            [EXPIRE_OPTION],
        ).fetchall()
        rank = {"TABLE": 0, "SCHEMA": 1, "GLOBAL": 2}
        wanted = {"TABLE": {name, f"{schema}.{name}"}, "SCHEMA": {schema}}
        matching = [
            (rank.get(str(scope), 3), str(value))
            for scope, entry, value in rows
            if str(scope) not in wanted or str(entry) in wanted[str(scope)]
        ]
        return min(matching)[1] if matching else None

    def _interval_seconds(self, value: str) -> int | None:
        try:
            row = self.con.execute("SELECT epoch(CAST(? AS INTERVAL))", [value]).fetchone()
        except duckdb.Error:
            return None
        return int(row[0]) if row else None

    def oldest_snapshot(self) -> int:
        row = self.con.execute(f"SELECT min(snapshot_id) FROM {self.alias}.snapshots()").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    # -- reading -----------------------------------------------------------------------
    def snapshot(self, mapping: Mapping, limit: int | None = None) -> Changes:
        if mapping.table == QUERY_TABLE or self.is_view(mapping.table):
            return self._pinned_snapshot(mapping, limit)
        snapshot = self.current_snapshot()
        identity = self.table_identity(mapping.table, snapshot)
        columns = ", ".join(quote(c) for c in mapping.columns)
        sql = f"SELECT {columns} FROM {self.qualified(mapping.table)} AT (VERSION => {snapshot})"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return Changes(self.read(sql, mapping), Checkpoint(str(snapshot), identity), full=True)

    def _pinned_snapshot(self, mapping: Mapping, limit: int | None) -> Changes:
        """A query or view: one transaction pins the lake for the id read and the rows alike."""
        self.con.execute("BEGIN TRANSACTION")
        snapshot = self.current_snapshot()
        reader = self.read(self.select_sql(mapping, limit), mapping)
        return Changes(reader, Checkpoint(str(snapshot), f"ducklake:{mapping.table}"), full=True)

    def changes(self, mapping: Mapping, checkpoint: Checkpoint) -> Changes:
        if mapping.table == QUERY_TABLE or self.is_view(mapping.table):
            raise ConfigurationError(
                f"{mapping.table} is a query or view, whose changes DuckLake does not record: "
                f"re-add source {self.source_name!r} with --strategy diff",
                ui_fix="Add the source again with the snapshot diff strategy",
            )
        since = int(checkpoint.position)
        snapshot = self.current_snapshot()
        identity = self.table_identity(mapping.table, snapshot)
        if identity != checkpoint.identity:
            raise self._replaced(
                mapping.table, f"its uuid changed from {checkpoint.identity} to {identity}"
            )
        if snapshot < since:
            raise self._replaced(
                mapping.table, f"the lake's snapshot went back from {since} to {snapshot}"
            )
        new = Checkpoint(str(snapshot), identity)
        if snapshot == since:
            return Changes(empty_reader(self._change_schema(mapping)), new, full=False)
        self._check_retained(mapping.table, since, snapshot)
        try:
            raw = arrow_reader(self.con, self._changes_sql(mapping, since + 1, snapshot))
        except duckdb.Error as exc:
            raise self._classify(mapping.table, since, exc) from exc
        batches = self._guarded(raw, mapping.table, since)
        return Changes(pa.RecordBatchReader.from_batches(raw.schema, batches), new, full=False)

    def _changes_sql(self, mapping: Mapping, start: int, end: int) -> str:
        """Insertions are upserts, deletions deletes; within a snapshot deletes sort first.

        This is ``table_changes`` without its self-joins: those only tell an update's
        pre/post image from a delete/insert, which map to the same ``_op`` here. (With
        DuckLake 1.5.5, reading ``change_type`` from ``ducklake_table_changes`` hung on a
        1M-row table after 100k changes; the two scans below took 0.1 s.)
        """
        schema, name = split_table(mapping.table)
        args = f"'{self.alias}', {_sql_text(schema)}, {_sql_text(name)}, {start}, {end}"
        columns = ", ".join(quote(c) for c in mapping.columns)
        return f"""
            SELECT {columns}, '{UPSERT}' AS {OP}, snapshot_id * 2 + 1 AS {ORD}
            FROM ducklake_table_insertions({args})
            UNION ALL
            SELECT {columns}, '{DELETE}' AS {OP}, snapshot_id * 2 AS {ORD}
            FROM ducklake_table_deletions({args})"""

    def _change_schema(self, mapping: Mapping) -> pa.Schema:
        table = self.table_schema(mapping.table)
        return change_schema(pa.schema([table.field(c) for c in mapping.columns]))

    def _check_retained(self, table: str, since: int, snapshot: int) -> None:
        """Every snapshot from the checkpoint on must be kept (ids are consecutive).

        The checkpoint's own snapshot counts too: expiring it lets DuckLake remove the
        data files whose rows the next snapshot deleted.
        """
        row = self.con.execute(
            f"SELECT count(*) FROM {self.alias}.snapshots() WHERE snapshot_id BETWEEN ? AND ?",
            [since, snapshot],
        ).fetchone()
        kept = int(row[0]) if row else 0
        if kept != snapshot - since + 1:
            raise self._expired(
                table,
                since,
                f"{snapshot - since + 1 - kept} of the snapshots {since}..{snapshot} were expired "
                f"(oldest kept: {self.oldest_snapshot()})",
            )

    def _guarded(
        self, raw: pa.RecordBatchReader, table: str, since: int
    ) -> Iterator[pa.RecordBatch]:
        """Data files removed after expiry surface only while reading."""
        try:
            yield from raw
        except (duckdb.Error, OSError, pa.ArrowException) as exc:
            raise self._classify(table, since, exc) from exc

    def _classify(self, table: str, since: int, exc: Exception) -> Exception:
        text = str(exc)
        # an expired start snapshot, or a data file removed by ducklake_cleanup_old_files
        gone = ("No snapshot found", "No such file", "Cannot open file")
        if any(g in text for g in gone) or isinstance(exc, FileNotFoundError):
            return self._expired(table, since, text.splitlines()[0])
        if isinstance(exc, duckdb.IOException | OSError):
            return WarehouseUnavailableError(
                f"reading the changes of {table} failed: {text.splitlines()[0]}; nothing was "
                "applied, the next sync tries again"
            )
        return ConfigurationError(
            f"reading the changes of {table} failed: {text.splitlines()[0]} — check the mapping "
            "(profilesync source test NAME shows it)",
            ui_fix=UiFix("Open the source's Edit page and fix the mapping", EDIT_SOURCE),
        )

    def _replaced(self, table: str, why: str) -> TableReplacedError:
        return replaced_error(table, why, self.source_name)

    def _expired(self, table: str, since: int, why: str) -> RetentionExceededError:
        remedy = (
            "Expire only snapshots older than the sync frequency "
            f"({EXPIRE_OPTION}, ducklake_expire_snapshots)"
        )
        return expired_error(table, f"after snapshot {since}", why, remedy, self.source_name)


#: the name before warehouses got a folder each; kept for one release
DuckLakeSource = DuckLakeWarehouse
