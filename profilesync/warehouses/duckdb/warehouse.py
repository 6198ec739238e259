"""A DuckDB database file as a warehouse, read by snapshot diff only.

A DuckDB file keeps no history of its changes, so every sync reads the whole table (or
the whole result of a query, joins included) and the store applies only the rows that
really differ. Tables are named ``schema.table`` (``main.users``). The file is opened
read-only for the length of one read; DuckDB refuses that while another process holds
it open for writing, which is reported as a retriable error.

The helpers here (an offline connection, an extension loaded from its wheel, reading SQL
as Arrow batches) are shared with the DuckLake source, which is DuckDB with the
``ducklake`` extension.
"""

from __future__ import annotations

import importlib.resources
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import duckdb
import pyarrow as pa

from profilesync.errors import (
    EDIT_SOURCE,
    ConfigurationError,
    MissingDependencyError,
    NotFoundError,
    UiFix,
    WarehouseUnavailableError,
)
from profilesync.mapping import QUERY_TABLE, checked, quote
from profilesync.model import Checkpoint, Connection, Mapping
from profilesync.sandbox import lock_down, locked
from profilesync.warehouses.duckdb.checks import DuckDBInspection, judge
from profilesync.warehouses.duckdb.spec import SPEC
from profilesync.warehouses.protocol import Changes, Check
from profilesync.warehouses.spec import ConfigSpec, FromSpec

#: what the web UI offers for a mapping the warehouse cannot read
_FIX_MAPPING = UiFix("Open the source's Edit page and fix the mapping", EDIT_SOURCE)
#: rows per Arrow batch handed to the sync engine
BATCH_ROWS = 262_144
#: never reach for the network: extensions are loaded from installed wheels or not at all
OFFLINE = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}


def offline_connect(
    database: str = ":memory:", *, read_only: bool = False
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection that never installs or autoloads extensions."""
    return quiet(duckdb.connect(database, read_only=read_only, config=dict(OFFLINE)))


def extension_file(name: str, package: str) -> str:
    """The ``.duckdb_extension`` file inside ``package``'s wheel for this DuckDB version."""
    module = package.replace("-", "_")
    try:
        root = importlib.resources.files(module)
    except ModuleNotFoundError:
        raise MissingDependencyError(package, "ducklake") from None
    path = root / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    if not path.is_file():
        raise ConfigurationError(
            f"{package} has no extension built for duckdb {duckdb.__version__}: the two must be the "
            f'same release; run `pip install "{package}=={duckdb.__version__}"`'
        )
    return str(path)


def load(db: duckdb.DuckDBPyConnection, name: str, package: str) -> None:
    """Load an extension from the file in its wheel: ``INSTALL`` would reach the network."""
    path = extension_file(name, package).replace("'", "''")
    db.execute(f"LOAD '{path}'")


def quiet(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """No DuckDB progress bar: it would draw over the CLI's own output on long reads.

    A second connection to a file this process already reads shares its locked-down
    database, where no setting can change: it keeps the default (a bar after 2 s).
    """
    if not locked(con):
        con.execute("SET enable_progress_bar = false")
    return con


def split_table(table: str) -> tuple[str, str]:
    """``"main.users"`` -> ``("main", "users")``; a bare name is in ``main``."""
    schema, dot, name = table.rpartition(".")
    if not name or (dot and not schema):
        raise ConfigurationError(f"table {table!r} is not a name: write it as schema.table")
    return (schema or "main"), name


def arrow_reader(
    con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None
) -> pa.RecordBatchReader:
    """Stream a query's result as Arrow batches (no Python per row)."""
    return con.execute(sql, params or []).to_arrow_reader(BATCH_ROWS)


def query_sql(query: str) -> str:
    """A user's query as a subquery: trailing semicolons would end the statement early."""
    return query.strip().rstrip(";").strip()


def user_query(mapping: Mapping) -> str:
    """A query mapping's SQL, checked again before it runs: a source saved by an older
    release was never refused for reading files (the locked-down connection would still
    stop it, with a less helpful message)."""
    query = mapping.query or ""
    checked(query, "duckdb")
    return query_sql(query)


def now_position() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class DuckDBWarehouse(FromSpec):
    """Tables, views and queries of one DuckDB database file (``--kind duckdb --path FILE``)."""

    kind: ClassVar[str] = "duckdb"
    dialect: ClassVar[str] = "duckdb"
    supports_cdc: ClassVar[bool] = False
    supports_query: ClassVar[bool] = True
    holds_server_resources: ClassVar[bool] = False
    spec: ClassVar[ConfigSpec] = SPEC

    def __init__(self, connection: Connection, source_name: str = "") -> None:
        self.path = Path(connection.config["path"])
        self.source_name = source_name
        self._con: duckdb.DuckDBPyConnection | None = None

    # -- the connection ----------------------------------------------------------------
    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            self._con = self._open()
        return self._con

    def _open(self) -> duckdb.DuckDBPyConnection:
        """The file, read-only, with no other file in reach of a user's query.

        DuckDB keeps its own database file (and WAL) usable after external access is
        turned off, so nothing else needs allowing.
        """
        try:
            con = offline_connect(str(self.path), read_only=True)
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise WarehouseUnavailableError(
                    f"the DuckDB file {self.path} is open for writing in another process ({_holder(exc)}): "
                    "DuckDB lets one writer or many readers use a file. Close the writer (or let it "
                    "finish) and sync again."
                ) from exc
            raise ConfigurationError(f"cannot open the DuckDB file {self.path}: {exc}") from exc
        except duckdb.ConnectionException as exc:
            raise WarehouseUnavailableError(
                f"the DuckDB file {self.path} is already open for writing in this process: "
                "close that connection before syncing"
            ) from exc
        lock_down(con)
        return con

    def qualified(self, table: str) -> str:
        schema, name = split_table(table)
        return f"{quote(schema)}.{quote(name)}"

    # -- discovery -------------------------------------------------------------------
    def list_tables(self) -> list[str]:
        rows = self.con.execute(
            """SELECT schema_name || '.' || table_name FROM duckdb_tables()
               WHERE database_name = current_database() AND NOT internal
               UNION SELECT schema_name || '.' || view_name FROM duckdb_views()
               WHERE database_name = current_database() AND NOT internal ORDER BY 1"""
        ).fetchall()
        return [str(r[0]) for r in rows]

    def table_schema(self, table: str) -> pa.Schema:
        if table == QUERY_TABLE:
            raise ConfigurationError("a query mapping has no table schema: read its result instead")
        try:
            return arrow_reader(self.con, f"SELECT * FROM {self.qualified(table)} LIMIT 0").schema
        except duckdb.CatalogException:
            raise NotFoundError(
                f"table {table!r} not found in {self.path} "
                f"(tables there: {', '.join(self.list_tables()) or 'none'})"
            ) from None

    # -- test mapping ----------------------------------------------------------------
    def inspect(self, mapping: Mapping, strategy: str = "diff") -> DuckDBInspection:
        """The query's error, or the table's row count: the only I/O of "Test mapping"."""
        if mapping.table == QUERY_TABLE:
            return DuckDBInspection(mapping, query_error=self._query_error(mapping))
        self.table_schema(mapping.table)
        return DuckDBInspection(mapping, file_name=self.path.name, rows=self._count(mapping.table))

    def judge(self, inspection: Any, frequency_seconds: int, strategy: str) -> list[Check]:
        """The checks for ``inspection``; the file is not read again."""
        return judge(inspection)

    def check(self, mapping: Mapping, frequency_seconds: int, strategy: str) -> list[Check]:
        return self.judge(self.inspect(mapping, strategy), frequency_seconds, strategy)

    def _query_error(self, mapping: Mapping) -> str:
        try:
            self.con.execute(f"DESCRIBE {user_query(mapping)}").fetchall()
        except duckdb.Error as exc:
            return str(exc).splitlines()[0]
        return ""

    def _count(self, table: str) -> int:
        row = self.con.execute(f"SELECT count(*) FROM {self.qualified(table)}").fetchone()
        return int(row[0]) if row else 0

    # -- reading -----------------------------------------------------------------------
    def select_sql(self, mapping: Mapping, limit: int | None) -> str:
        """The SELECT a snapshot runs: the mapped columns, or the user's query as written."""
        if mapping.table == QUERY_TABLE:
            sql = f"SELECT * FROM ({user_query(mapping)}) AS q"
        else:
            columns = ", ".join(quote(c) for c in mapping.columns)
            sql = f"SELECT {columns} FROM {self.qualified(mapping.table)}"
        return sql if limit is None else f"{sql} LIMIT {int(limit)}"

    def snapshot(self, mapping: Mapping, limit: int | None = None) -> Changes:
        if mapping.table != QUERY_TABLE:
            self.table_schema(mapping.table)
        reader = self.read(self.select_sql(mapping, limit), mapping)
        return Changes(reader, Checkpoint(now_position(), f"duckdb:{mapping.table}"), full=True)

    def read(self, sql: str, mapping: Mapping) -> pa.RecordBatchReader:
        try:
            return arrow_reader(self.con, sql)
        except duckdb.Error as exc:
            what = "query" if mapping.table == QUERY_TABLE else f"table {mapping.table}"
            raise ConfigurationError(
                f"reading the {what} failed: {str(exc).splitlines()[0]} — fix the mapping "
                "(profilesync source test NAME shows it)",
                ui_fix=_FIX_MAPPING,
            ) from exc

    def changes(self, mapping: Mapping, checkpoint: Checkpoint) -> Changes:
        raise ConfigurationError(
            f"{self.kind} connections keep no change history and only support --strategy diff: "
            f"re-add the source with --strategy diff (or run `profilesync sync {self.source_name} --resync`)",
            ui_message=f"{self.kind} connections keep no change history: a source on one syncs by "
            "snapshot diff only.",
            ui_fix=UiFix("Resync", f"/sources/{self.source_name}#resync"),
        )

    def release(self, mapping: Mapping) -> None:
        return None

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None


def _holder(exc: Exception) -> str:
    text = str(exc)
    return "PID " + text.split("(PID ")[-1].split(")")[0] if "(PID " in text else "unknown process"


#: the name before warehouses got a folder each; kept for one release
DuckDBSource = DuckDBWarehouse
