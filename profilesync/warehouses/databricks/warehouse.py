"""Delta tables behind a Databricks SQL warehouse, read with ``databricks-sql-connector``
(extra ``databricks``).

Change capture reads the change data feed with the ``table_changes`` table function::

    SELECT <columns>, _change_type, _commit_version
    FROM table_changes('catalog.schema.t', <checkpoint + 1>, <latest version>)

The checkpoint is a table version: the first sync reads ``VERSION AS OF`` the latest
version and records it. Identity and history come from ``DESCRIBE DETAIL`` (the Delta
table ``id``, its properties) and ``DESCRIBE HISTORY`` (versions and operations), so a
drop-and-replace shows as a new id, a version that went back, or a ``CREATE OR
REPLACE`` after the checkpoint; a table restored from a copy that took new commits shows
as another commit time at the checkpoint's version. The rules are those of the ``delta`` source, which reads
the same tables from storage (``deltacommon``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import pyarrow as pa
from sqlglot import exp

from profilesync.errors import (
    ConfigurationError,
    MissingDependencyError,
    NotFoundError,
    ProfilesyncError,
    RetentionExceededError,
)
from profilesync.mapping import QUERY_TABLE
from profilesync.model import Checkpoint, Mapping
from profilesync.warehouses.databricks.spec import SPEC
from profilesync.warehouses.delta.rules import (
    CDF,
    CHANGE_TYPE,
    COMMIT_TIMESTAMP,
    COMMIT_VERSION,
    FeedInspection,
    cdf_off_error,
    cdf_on,
    check_feed_since,
    check_identity,
    check_not_replaced,
    check_same_commit,
    expired,
    judge_feed,
)
from profilesync.warehouses.delta.rules import change_ops as cdf_ops
from profilesync.warehouses.protocol import Changes, Check, change_schema, empty_reader
from profilesync.warehouses.spec import ConfigSpec
from profilesync.warehouses.sqlwarehouse import (
    QUERY_NOTE,
    TIMESTAMP,
    SQLWarehouse,
    as_map,
    conform,
    limit_sql,
    plain_identifier,
    string_literal,
)

FETCH_ROWS = 100_000
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


class DatabricksWarehouse(SQLWarehouse[TableRef]):
    kind: ClassVar[str] = "databricks"
    dialect: ClassVar[str] = "databricks"
    warehouse: ClassVar[str] = "Databricks"
    spec: ClassVar[ConfigSpec] = SPEC

    # -- plumbing -----------------------------------------------------------------
    def _connect(self) -> Any:
        return connect(self.config)

    def _known_error(self, text: str, where: str) -> ProfilesyncError | None:
        lowered = text.lower()
        if any(marker in lowered for marker in _EXPIRED):
            return self._expired(where, f"Databricks answered: {text}")
        if any(marker in lowered for marker in _NOT_FOUND):
            return NotFoundError(
                f"Databricks answered: {text}. Check the table name (catalog.schema.table) and "
                "that the token's user has SELECT on it and USE CATALOG / USE SCHEMA above it"
            )
        return None

    def _arrow_tables(self, cursor: Any) -> Iterator[pa.Table]:
        """The result as Arrow tables of up to FETCH_ROWS rows, straight from the connector."""
        while True:
            table = cursor.fetchmany_arrow(FETCH_ROWS)
            if table.num_rows == 0:
                return
            yield table

    def _result_type(self, column: Any) -> pa.DataType:
        return description_type(column)

    def _quote(self, name: str) -> str:
        return identifier(name)

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
                "data feed and versions. Use the query form with --strategy diff",
                ui_fix="Write a query on it instead, read by snapshot diff",
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
    def _inspect_table(self, table: TableRef) -> FeedInspection:
        detail = self._detail(table)
        history = self._history(table)
        found = f"Delta table {table.sql} (id {detail.get('id')}) at version {history[0].version}"
        properties = as_map(detail.get("properties"))
        since = cdf_enabled_since(history) if cdf_on(properties) else None
        return FeedInspection(table.sql, found, properties, since)

    def _judge_table(
        self, table: TableRef, found: FeedInspection, frequency_seconds: int
    ) -> tuple[Check, list[Check]]:
        return Check("table", "pass", found.found), judge_feed(found, frequency_seconds)

    # -- reading -----------------------------------------------------------------------
    def snapshot(self, mapping: Mapping, limit: int | None = None) -> Changes:
        if mapping.table == QUERY_TABLE:
            return self._query_snapshot(mapping, limit, datetime.now(UTC).isoformat())
        table = self.table_ref(mapping.table)
        identity = str(self._detail(table)["id"])
        latest = self._history(table)[0]
        version = latest.version
        schema, select = self._projection(table, mapping)
        sql = f"SELECT {select} FROM {table.sql} VERSION AS OF {version}{limit_sql(limit)}"
        reader = self._stream(sql, table, schema, lambda t: conform(t, schema))
        return Changes(reader, Checkpoint(str(version), identity, commit_marks(latest)), full=True)

    def changes(self, mapping: Mapping, checkpoint: Checkpoint) -> Changes:
        if mapping.table == QUERY_TABLE:
            raise ConfigurationError(QUERY_NOTE)
        table = self.table_ref(mapping.table)
        detail = self._detail(table)
        history = self._history(table)
        since, latest = int(checkpoint.position), history[0].version
        check_identity(table.sql, checkpoint, str(detail["id"]), latest, self.source_name)
        at_since = next((c for c in history if c.version == since), None)
        marks = commit_marks(at_since) if at_since else {}
        check_same_commit(table.sql, checkpoint, marks, self.source_name)
        commits = ((c.version, c.operation) for c in history)
        check_not_replaced(table.sql, commits, since, self.source_name)
        if not cdf_on(as_map(detail.get("properties"))):
            raise cdf_off_error(table.sql, self.source_name)
        schema, select = self._projection(table, mapping)
        out = change_schema(schema)
        new = Checkpoint(str(latest), str(detail["id"]), commit_marks(history[0]))
        if latest == since:
            return Changes(empty_reader(out), new, full=False)
        self._check_history(table, history, since)
        sql = (
            f"SELECT {select}, {CHANGE_TYPE}, {COMMIT_VERSION} "
            f"FROM table_changes({string_literal(table.sql)}, {since + 1}, {latest})"
        )
        reader = self._stream(sql, table, out, lambda t: change_ops(t, schema, out))
        return Changes(reader, new, full=False)

    def _check_history(self, table: TableRef, history: list[Commit], since: int) -> None:
        # the log first: without the commits after the checkpoint nothing else can be told
        oldest = history[-1].version
        if oldest > since + 1:
            raise self._expired(
                table.sql,
                f"DESCRIBE HISTORY starts at version {oldest}, after the checkpoint (version {since}): "
                "the log was cleaned up",
            )
        check_feed_since(table.sql, cdf_enabled_since(history), since, self.source_name)

    def _expired(self, table: str, why: str) -> RetentionExceededError:
        return expired(table, "since the last sync", why, self.source_name)


def commit_marks(commit: Commit) -> dict[str, Any]:
    """The commit time a checkpoint keeps, to notice another commit at its version later."""
    stamp: Any = commit.timestamp
    if stamp is None:
        return {}
    return {COMMIT_TIMESTAMP: stamp.isoformat() if isinstance(stamp, datetime) else str(stamp)}


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
    op, order = cdf_ops(table.column(CHANGE_TYPE), table.column(COMMIT_VERSION))
    data = conform(table, schema)
    return pa.Table.from_arrays([*data.columns, op, order], schema=out)


#: the name before warehouses got a folder each; kept for one release
DatabricksSource = DatabricksWarehouse
