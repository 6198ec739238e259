"""Delta tables behind a Databricks SQL warehouse, read with ``databricks-sql-connector``
(extra ``databricks``).

Change capture reads the change data feed with the ``table_changes`` table function::

    SELECT <columns>, _change_type, _commit_version
    FROM table_changes('catalog.schema.t', <checkpoint + 1>, <latest version>)

The checkpoint is a table version: the first sync reads ``VERSION AS OF`` the latest
version and records it. Identity and history come from ``DESCRIBE DETAIL`` (the Delta
table ``id``, its properties) and ``DESCRIBE HISTORY`` (versions and operations), so a
drop-and-replace shows as a new id, a version that went back, or a ``CREATE OR
REPLACE`` after the checkpoint. The rules follow the ``delta`` source, which reads the
same tables from storage.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from profilesync.errors import (
    ChangeTrackingError,
    ConfigurationError,
    MissingDependencyError,
    NotFoundError,
    ProfilesyncError,
    RetentionExceededError,
    TableReplacedError,
)
from profilesync.mapping import QUERY_TABLE
from profilesync.model import Checkpoint, Connection, Mapping, format_frequency
from profilesync.sources.base import DELETE, OP, ORD, UPSERT, Changes, Check
from profilesync.sources.delta import (
    CDF,
    DEFAULT_FILE_RETENTION,
    DEFAULT_LOG_RETENTION,
    FILE_RETENTION,
    LOG_RETENTION,
    WEEK,
    interval_seconds,
)
from profilesync.sources.sqlwarehouse import (
    DIFF_NOTE,
    QUERY_NOTE,
    TIMESTAMP,
    ErrorTranslator,
    arrow_reader,
    as_map,
    conform,
    connect_error,
    driver_error,
    fetch_rows,
    is_driver_error,
    limit_sql,
    peek,
    plain_identifier,
    query_text,
    rename_to_mapping,
    resolve_columns,
    string_literal,
    widen,
)

CHANGE_TYPE = "_change_type"
COMMIT_VERSION = "_commit_version"
FETCH_ROWS = 100_000
_REPLACE_OPS = {
    "CREATE OR REPLACE TABLE",
    "REPLACE TABLE",
    "CREATE OR REPLACE TABLE AS SELECT",
    "REPLACE TABLE AS SELECT",
}
#: error classes and texts Databricks answers with when the requested changes are gone
_EXPIRED = (
    "delta_missing_change_data",
    "change data was not recorded",
    "delta_change_data_file_not_found",
    "delta_unsupported_time_travel_beyond_deleted_file_retention_duration",
    "cannot time travel delta table to version",
    "delta_file_not_found",
    "filenotfoundexception",
)
_NOT_FOUND = ("table_or_view_not_found", "schema_not_found", "catalog_not_found")
_SIMPLE_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "varchar": pa.string(),
    "char": pa.string(),
    "bigint": pa.int64(),
    "long": pa.int64(),
    "int": pa.int64(),
    "integer": pa.int64(),
    "smallint": pa.int64(),
    "short": pa.int64(),
    "tinyint": pa.int64(),
    "byte": pa.int64(),
    "double": pa.float64(),
    "float": pa.float64(),
    "real": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "timestamp": TIMESTAMP,
    "timestamp_ntz": TIMESTAMP,
    "timestamp_ltz": TIMESTAMP,
    "binary": pa.binary(),
}


def connect(config: dict[str, Any]) -> Any:
    """A DB-API connection from the official connector (tests put a stand-in here)."""
    try:
        from databricks import sql
    except ImportError:
        raise MissingDependencyError("databricks-sql-connector", "databricks") from None
    return sql.connect(
        server_hostname=config["server_hostname"],
        http_path=config["http_path"],
        access_token=config["access_token"],
        catalog=config.get("catalog"),
        schema=config.get("schema"),
        # arrays, maps and structs as JSON text: profile values are scalars or JSON
        _use_arrow_native_complex_types=False,
    )


def identifier(name: str) -> str:
    return name if plain_identifier(name) else "`" + name.replace("`", "``") + "`"


def arrow_type(databricks_type: str) -> pa.DataType:
    """``DESCRIBE TABLE`` type text -> the Arrow type profilesync reads the column as."""
    text = databricks_type.strip().lower()
    base = text.split("(")[0].split("<")[0].strip()
    if base in ("decimal", "dec", "numeric"):
        args = text[len(base) :].strip("() ").split(",")
        precision = int(args[0]) if args[0].strip() else 10
        scale = int(args[1]) if len(args) > 1 else 0
        return pa.decimal128(precision, scale)
    # arrays, maps, structs, variants and intervals arrive as text
    return _SIMPLE_TYPES.get(base, pa.string())


def description_type(column: Any) -> pa.DataType:
    """An Arrow type from ``cursor.description`` (name, type name, ..., precision, scale)."""
    if str(column[1]).lower() == "decimal":
        return pa.decimal128(column[4] or 10, column[5] or 0)
    return arrow_type(str(column[1]))


@dataclass(frozen=True)
class TableRef:
    catalog: str
    schema: str
    name: str

    @property
    def sql(self) -> str:
        return ".".join(identifier(p) for p in (self.catalog, self.schema, self.name))


@dataclass(frozen=True)
class Commit:
    """One row of ``DESCRIBE HISTORY``."""

    version: int
    timestamp: datetime | None
    operation: str
    parameters: dict[str, Any]

    def cdf_setting(self) -> bool | None:
        """True/False when this commit set or removed the change data feed, else None."""
        if self.operation == "UNSET TBLPROPERTIES":
            keys = self.parameters.get("propKeys") or "[]"
            return False if CDF in (json.loads(keys) if isinstance(keys, str) else keys) else None
        properties = self.parameters.get("properties")
        if properties is None:
            return None
        value = as_map(properties).get(CDF)
        if value is None:
            # a (re)created table without the property has the feed off
            return False if self.operation.startswith(("CREATE", "REPLACE")) else None
        return str(value).strip().lower() == "true"


class DatabricksSource:
    kind: ClassVar[str] = "databricks"
    dialect: ClassVar[str] = "databricks"
    supports_cdc: ClassVar[bool] = True
    supports_query: ClassVar[bool] = True
    secret_fields: ClassVar[tuple[str, ...]] = ("access_token",)

    def __init__(self, connection: Connection, source_name: str = "") -> None:
        self.config = connection.config
        self.source_name = source_name
        self._connection: Any = None

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        required = ("server_hostname", "http_path", "access_token", "catalog")
        missing = [k for k in required if not config.get(k)]
        if missing:
            raise ConfigurationError(
                f"a databricks connection needs {', '.join(missing)}: add "
                + " ".join(f"-o {k}=..." for k in missing)
                + " (server hostname and HTTP path are on the SQL warehouse's Connection details tab)"
            )
        known = {*required, "schema"}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ConfigurationError(
                f"unknown databricks setting(s) {', '.join(unknown)}: use {', '.join(sorted(known))}"
            )
        hostname = str(config["server_hostname"]).removeprefix("https://").rstrip("/")
        return {"schema": "default", **config, "server_hostname": hostname}

    # -- plumbing -----------------------------------------------------------------
    def _cursor(self) -> Any:
        if self._connection is None:
            try:
                self._connection = connect(self.config)
            except ProfilesyncError:
                raise
            except Exception as exc:
                # connectors also raise their HTTP library's errors while connecting
                raise connect_error(exc, "Databricks") from exc
        return self._connection.cursor()

    def _run(self, sql: str, table: TableRef | None = None) -> Any:
        cursor = self._cursor()
        try:
            cursor.execute(sql)
        except Exception as exc:
            if not is_driver_error(exc):
                raise
            raise self._translate(exc, table) from exc
        return cursor

    def _rows(self, sql: str, table: TableRef | None = None) -> list[dict[str, Any]]:
        return fetch_rows(self._run(sql, table))

    def _translate(self, exc: BaseException, table: TableRef | None) -> ProfilesyncError:
        text = " ".join(str(exc).split())
        lowered = text.lower()
        where = table.sql if table else "the table"
        if any(marker in lowered for marker in _EXPIRED):
            return self._expired(where, f"Databricks answered: {text}")
        if any(marker in lowered for marker in _NOT_FOUND):
            return NotFoundError(
                f"Databricks answered: {text}. Check the table name (catalog.schema.table) and "
                "that the token's user has SELECT on it and USE CATALOG / USE SCHEMA above it"
            )
        return driver_error(exc, "Databricks")

    def _reader_errors(self, table: TableRef | None) -> ErrorTranslator:
        def translate(exc: BaseException) -> BaseException | None:
            return self._translate(exc, table) if is_driver_error(exc) else None

        return translate

    def _arrow_tables(self, cursor: Any) -> Iterator[pa.Table]:
        """The result as Arrow tables of up to FETCH_ROWS rows, straight from the connector."""
        while True:
            table = cursor.fetchmany_arrow(FETCH_ROWS)
            if table.num_rows == 0:
                return
            yield table

    # -- discovery -------------------------------------------------------------------
    def table_ref(self, table: str) -> TableRef:
        parsed = exp.to_table(table, dialect="databricks")
        parts = [
            p.name
            for p in (parsed.args.get("catalog"), parsed.args.get("db"), parsed.this)
            if isinstance(p, exp.Identifier)
        ]
        if len(parts) == 3:
            return TableRef(*parts)
        if len(parts) == 2:
            return TableRef(self.config["catalog"], parts[0], parts[1])
        return TableRef(self.config["catalog"], self.config.get("schema") or "default", parts[0])

    def list_tables(self) -> list[str]:
        schema = self.config.get("schema") or "default"
        rows = self._rows(
            f"SHOW TABLES IN {identifier(self.config['catalog'])}.{identifier(schema)}"
        )
        return sorted(
            f"{identifier(schema)}.{identifier(r['tableName'])}"
            for r in rows
            if not r.get("isTemporary")
        )

    def _detail(self, table: TableRef) -> dict[str, Any]:
        rows = self._rows(f"DESCRIBE DETAIL {table.sql}", table)
        if not rows:
            raise NotFoundError(f"Databricks table {table.sql} not found")
        detail = rows[0]
        if str(detail.get("format") or "delta").lower() != "delta":
            raise ConfigurationError(
                f"{table.sql} is a {detail.get('format')} table: only Delta tables have a change "
                "data feed and versions. Use the query form with --strategy diff"
            )
        return detail

    def _history(self, table: TableRef) -> list[Commit]:
        """Every retained commit, newest first (``DESCRIBE HISTORY`` keeps the log retention)."""
        rows = self._rows(f"DESCRIBE HISTORY {table.sql}", table)
        commits = [
            Commit(
                int(r["version"]),
                r.get("timestamp"),
                str(r.get("operation") or ""),
                as_map(r.get("operationParameters")),
            )
            for r in rows
        ]
        return sorted(commits, key=lambda c: c.version, reverse=True)

    def _columns(self, table: TableRef) -> dict[str, pa.DataType]:
        columns: dict[str, pa.DataType] = {}
        for row in self._rows(f"DESCRIBE TABLE {table.sql}", table):
            name = str(row.get("col_name") or "")
            if not name or name.startswith("#"):
                break  # partition and detail sections follow the columns
            columns[name] = arrow_type(str(row["data_type"]))
        return columns

    def table_schema(self, table: str) -> pa.Schema:
        return pa.schema(list(self._columns(self.table_ref(table)).items()))

    # -- test mapping ----------------------------------------------------------------
    def check(self, mapping: Mapping, frequency_seconds: int, strategy: str) -> list[Check]:
        if mapping.table == QUERY_TABLE:
            return [Check("query", "info", QUERY_NOTE)]
        table = self.table_ref(mapping.table)
        detail = self._detail(table)
        history = self._history(table)
        checks = [
            Check(
                "table",
                "pass",
                f"Delta table {table.sql} (id {detail.get('id')}) at version {history[0].version}",
            )
        ]
        if strategy == "diff":
            checks.append(Check("strategy", "info", DIFF_NOTE))
            return checks
        properties = as_map(detail.get("properties"))
        if not _cdf_on(properties):
            checks.append(self._cdf_missing(table))
            return checks
        since = cdf_enabled_since(history)
        checks.append(Check("change data feed", "pass", f"{CDF} = true since version {since}"))
        checks.extend(retention_checks(table, properties, frequency_seconds))
        return checks

    def _cdf_missing(self, table: TableRef) -> Check:
        return Check(
            "change data feed",
            "fail",
            f"{CDF} is not enabled on {table.sql}: changes cannot be read incrementally. "
            "Enable it (or choose --strategy diff to re-read the table every sync).",
            f"ALTER TABLE {table.sql} SET TBLPROPERTIES ({CDF} = true)",
        )

    # -- reading -----------------------------------------------------------------------
    def snapshot(self, mapping: Mapping, limit: int | None = None) -> Changes:
        if mapping.table == QUERY_TABLE:
            return self._query_snapshot(mapping, limit)
        table = self.table_ref(mapping.table)
        identity = str(self._detail(table)["id"])
        version = self._history(table)[0].version
        schema, select = self._projection(table, mapping)
        cursor = self._run(
            f"SELECT {select} FROM {table.sql} VERSION AS OF {version}{limit_sql(limit)}", table
        )
        reader = arrow_reader(
            self._arrow_tables(cursor),
            schema,
            lambda t: conform(t, schema),
            self._reader_errors(table),
        )
        return Changes(reader, Checkpoint(str(version), identity), full=True)

    def _projection(self, table: TableRef, mapping: Mapping) -> tuple[pa.Schema, str]:
        columns = self._columns(table)
        real = resolve_columns(mapping.columns, columns, table.sql)
        schema = pa.schema([(c, columns[real[c]]) for c in mapping.columns])
        select = ", ".join(f"{identifier(real[c])} AS {identifier(c)}" for c in mapping.columns)
        return schema, select

    def _query_snapshot(self, mapping: Mapping, limit: int | None) -> Changes:
        sql = query_text(mapping)
        if limit is not None:
            sql = f"SELECT * FROM ({sql}) AS q{limit_sql(limit)}"
        cursor = self._run(sql)
        names = rename_to_mapping([d[0] for d in cursor.description], mapping)
        first, tables = peek(self._arrow_tables(cursor))
        if first is None:
            types = [description_type(d) for d in cursor.description]
        else:
            types = [widen(t) for t in first.schema.types]
        schema = pa.schema(list(zip(names, types, strict=True)))
        reader = arrow_reader(
            tables,
            schema,
            lambda t: conform(t.rename_columns(names), schema),
            self._reader_errors(None),
        )
        return Changes(reader, Checkpoint(datetime.now(UTC).isoformat(), "query"), True)

    def changes(self, mapping: Mapping, checkpoint: Checkpoint) -> Changes:
        if mapping.table == QUERY_TABLE:
            raise ConfigurationError(QUERY_NOTE)
        table = self.table_ref(mapping.table)
        detail = self._detail(table)
        history = self._history(table)
        since, latest = int(checkpoint.position), history[0].version
        self._check_identity(table, checkpoint, str(detail["id"]), latest)
        if any(c.operation in _REPLACE_OPS and c.version > since for c in history):
            raise self._replaced(
                table, "the table was replaced (CREATE OR REPLACE) after the checkpoint"
            )
        if not _cdf_on(as_map(detail.get("properties"))):
            raise ChangeTrackingError(
                f"{CDF} is off on {table.sql}: run `{self._cdf_missing(table).fix_sql}`, then "
                f"`profilesync sync {self.source_name} --resync`"
            )
        schema, select = self._projection(table, mapping)
        out = pa.schema([*schema, pa.field(OP, pa.string()), pa.field(ORD, pa.int64())])
        new = Checkpoint(str(latest), str(detail["id"]))
        if latest == since:
            return Changes(pa.RecordBatchReader.from_batches(out, []), new, full=False)
        self._check_history(table, history, since)
        name = string_literal(table.sql)
        cursor = self._run(
            f"SELECT {select}, {CHANGE_TYPE}, {COMMIT_VERSION} "
            f"FROM table_changes({name}, {since + 1}, {latest})",
            table,
        )
        reader = arrow_reader(
            self._arrow_tables(cursor),
            out,
            lambda t: change_ops(t, schema, out),
            self._reader_errors(table),
        )
        return Changes(reader, new, full=False)

    def _check_identity(
        self, table: TableRef, checkpoint: Checkpoint, identity: str, latest: int
    ) -> None:
        if identity != checkpoint.identity:
            raise self._replaced(
                table, f"Delta table id changed from {checkpoint.identity} to {identity}"
            )
        if latest < int(checkpoint.position):
            raise self._replaced(
                table, f"its version went back from {checkpoint.position} to {latest}"
            )

    def _check_history(self, table: TableRef, history: list[Commit], since: int) -> None:
        # the log first: without the commits after the checkpoint nothing else can be told
        oldest = history[-1].version
        if oldest > since + 1:
            raise self._expired(
                table.sql,
                f"DESCRIBE HISTORY starts at version {oldest}, after the checkpoint (version {since}): "
                "the log was cleaned up",
            )
        enabled = cdf_enabled_since(history)
        if enabled > since + 1:
            raise RetentionExceededError(
                f"the change data feed of {table.sql} was enabled at version {enabled}, after the "
                f"checkpoint (version {since}): changes in between were never recorded. "
                f"Run `profilesync sync {self.source_name} --resync` to diff the table against the store."
            )

    def _replaced(self, table: TableRef, why: str) -> TableReplacedError:
        return TableReplacedError(
            f"table {table.sql} was dropped and re-created ({why}), as a dbt full refresh or "
            "CREATE OR REPLACE TABLE does. Nothing was applied. CDC needs incremental models; "
            f"run `profilesync sync {self.source_name} --resync` to diff the new table against the store."
        )

    def _expired(self, table: str, why: str) -> RetentionExceededError:
        return RetentionExceededError(
            f"the changes of {table} since the last sync are no longer retained: {why}. Nothing was "
            f"applied. Raise {LOG_RETENTION} / {FILE_RETENTION} above the sync frequency, and run "
            f"`profilesync sync {self.source_name} --resync` to diff the table against the store."
        )

    def release(self, mapping: Mapping) -> None:
        return None

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _cdf_on(properties: dict[str, Any]) -> bool:
    return str(properties.get(CDF, "false")).strip().lower() == "true"


def cdf_enabled_since(history: list[Commit]) -> int:
    """The first version from which the change data feed has been on without a break.

    ``history`` is newest first and the feed is on now: the newest commit that set the
    property is where it was turned on (a commit that turned it off ends the search one
    version later). Without such a commit in the retained history, the feed has been on
    since the oldest retained version.
    """
    since = history[0].version
    for commit in history:
        setting = commit.cdf_setting()
        if setting is True:
            return commit.version
        if setting is False:
            return since
        since = commit.version
    return since


def change_ops(table: pa.Table, schema: pa.Schema, out: pa.Schema) -> pa.Table:
    """Change data feed rows -> ``_op``/``_ord``: ordered by commit, deletes (and update
    pre-images) before inserts (and post-images) within one commit."""
    kind = pc.cast(table.column(CHANGE_TYPE), pa.string())
    upsert = pc.is_in(kind, pa.array(["insert", "update_postimage"]))
    version = pc.cast(table.column(COMMIT_VERSION), pa.int64())
    order = pc.add(pc.multiply(version, 2), pc.cast(upsert, pa.int64()))
    op = pc.if_else(upsert, UPSERT, DELETE)
    data = conform(table, schema)
    return pa.Table.from_arrays([*data.columns, op, order], schema=out)


def retention_checks(
    table: TableRef, properties: dict[str, Any], frequency_seconds: int
) -> list[Check]:
    """``delta.logRetentionDuration`` / ``delta.deletedFileRetentionDuration`` against the
    frequency: refused when shorter, a warning under 7 days (as for the ``delta`` kind)."""
    checks = []
    for key, default in (
        (LOG_RETENTION, DEFAULT_LOG_RETENTION),
        (FILE_RETENTION, DEFAULT_FILE_RETENTION),
    ):
        value = str(properties.get(key, default))
        seconds = interval_seconds(value)
        fix = f"ALTER TABLE {table.sql} SET TBLPROPERTIES ({key} = 'interval 7 days')"
        if seconds is None:
            checks.append(
                Check(key, "warn", f"{key} = {value!r} is not a duration profilesync reads")
            )
        elif seconds < frequency_seconds:
            checks.append(
                Check(
                    key,
                    "fail",
                    f"{key} = {value} is shorter than the sync frequency "
                    f"{format_frequency(frequency_seconds)}: changes would expire before they are read",
                    fix,
                )
            )
        elif seconds < WEEK:
            checks.append(
                Check(
                    key,
                    "warn",
                    f"{key} = {value} is under 7 days: a paused or failing source will need a resync sooner",
                    fix,
                )
            )
        else:
            checks.append(Check(key, "pass", f"{key} = {value}"))
    return checks
