"""What the SQL warehouse sources (Snowflake, Databricks SQL) share.

Both talk to a DB-API 2.0 connection made by an official connector that can hand results
over as Arrow. Metadata statements (``SHOW``, ``DESCRIBE``) return a few rows and are read
as rows; table data is read as Arrow tables and conformed batch by batch with Arrow
compute, so no Python runs per row.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from profilesync.errors import (
    ConfigurationError,
    ProfilesyncError,
    WarehouseUnavailableError,
)
from profilesync.mapping import QUERY_TABLE
from profilesync.model import Checkpoint, Connection, Mapping
from profilesync.warehouses.protocol import Changes, Check
from profilesync.warehouses.rules import DIFF_NOTE
from profilesync.warehouses.spec import FromSpec

Row = dict[str, Any]
#: every timestamp becomes UTC microseconds, what the store keeps (DuckDB TIMESTAMPTZ)
TIMESTAMP = pa.timestamp("us", tz="UTC")
#: DB-API exception classes that mean "the warehouse did not answer" (PEP 249 names)
_UNAVAILABLE = {"OperationalError", "InterfaceError", "RequestError"}
#: words of a connection error that is about credentials, not reachability
_AUTH = (
    "incorrect username",
    "password",
    "authenticat",
    "jwt",
    "private key",
    "token",
    "credential",
    "unauthorized",
    "not authorized",
    "forbidden",
    "401",
    "403",
)
QUERY_NOTE = (
    "a query source runs the query as written every sync and applies only the rows that "
    "differ (snapshot diff); change data capture needs a single table"
)


def is_driver_error(exc: BaseException) -> bool:
    """A PEP 249 error (every DB-API driver derives its errors from a class named ``Error``)."""
    return any(cls.__name__ == "Error" for cls in type(exc).__mro__)


def driver_error(exc: BaseException, warehouse: str) -> ProfilesyncError:
    """A driver error the source did not recognise, as the error class a user can act on."""
    text = " ".join(str(exc).split())
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & _UNAVAILABLE:
        return WarehouseUnavailableError(
            f"{warehouse} did not answer: {text}. Check the connection settings and that the "
            "warehouse is running, then try again"
        )
    return ConfigurationError(
        f"{warehouse} refused a statement: {text}. Check that the connection's user may read "
        "the table (and its change tracking) and that the table and columns still exist"
    )


def connect_error(exc: BaseException, warehouse: str) -> ProfilesyncError:
    """A driver error raised while connecting: refused credentials, or an unreachable service.

    Connectors raise both with one class and SQLSTATE (Snowflake: 250001, 08001), so the
    text tells them apart; anything not about credentials is worth retrying.
    """
    text = " ".join(str(exc).split())
    if any(marker in text.lower() for marker in _AUTH):
        return ConfigurationError(
            f"{warehouse} refused the connection: {text}. Check the connection's user and credentials"
        )
    return WarehouseUnavailableError(
        f"could not reach {warehouse}: {text}. Check the network and the connection's "
        "host/account settings, then try again"
    )


#: translates a driver error raised while a result streams (None: not the source's to translate)
ErrorTranslator = Callable[[BaseException], BaseException | None]


def fetch_rows(cursor: Any) -> list[Row]:
    """All rows of a small metadata result as dicts keyed by the result's column names."""
    names = [d[0] for d in cursor.description or []]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def as_map(value: Any) -> dict[str, Any]:
    """A map column as connectors return it: a dict, (key, value) pairs or JSON text."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        loaded = json.loads(value) if value.strip() else {}
        return loaded if isinstance(loaded, dict) else {}
    return {str(k): v for k, v in value}


def utc(value: datetime) -> datetime:
    """A naive timestamp from a session that runs in UTC, or an aware one, as aware UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def present(name: str) -> str:
    """How a column is named in mappings: a case-insensitive upper-case name reads in lower case."""
    return name.lower() if name == name.upper() else name


def resolve_columns(wanted: Iterable[str], available: Iterable[str], table: str) -> dict[str, str]:
    """Mapping column -> the warehouse's own column name (exact, else case-insensitive)."""
    names = list(available)
    folded = {n.casefold(): n for n in names}
    resolved = {}
    for column in wanted:
        real = column if column in names else folded.get(column.casefold())
        if real is None:
            raise ConfigurationError(
                f"table {table} has no column {column!r} any more (it has: {', '.join(names)}); "
                "change the source's mapping or re-create the column"
            )
        resolved[column] = real
    return resolved


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """The ``schema`` columns of ``table``, cast to the schema's types.

    Connectors hand over the narrowest type per batch (Snowflake sends ``int8`` for a
    ``NUMBER(38,0)`` chunk of small values) and nanosecond timestamps; one reader needs
    one schema. Temporal and decimal casts may truncate below the target precision, which
    is what the store keeps anyway; integer casts stay checked, so an overflow fails loudly.
    """
    arrays = [_cast(table.column(field.name), field.type) for field in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def _cast(column: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    if column.type == target:
        return column
    lossy = pa.types.is_timestamp(target) or pa.types.is_time(target) or pa.types.is_decimal(target)
    if pa.types.is_struct(column.type) or pa.types.is_list(column.type):
        raise ConfigurationError(
            f"the warehouse returned a nested {column.type} where profilesync expects {target}"
        )
    return pc.cast(column, target, safe=not lossy)


def arrow_reader(
    tables: Iterable[pa.Table],
    schema: pa.Schema,
    convert: Callable[[pa.Table], pa.Table],
    on_error: ErrorTranslator,
) -> pa.RecordBatchReader:
    """A reader over a connector's Arrow tables; driver errors raised while reading are
    translated by ``on_error`` (which returns None for errors it leaves alone)."""

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            for table in tables:
                if table.num_rows:
                    yield from convert(table).to_batches()
        except Exception as exc:
            translated = on_error(exc)
            if translated is None:
                raise
            raise translated from exc

    return pa.RecordBatchReader.from_batches(schema, batches())


def peek(tables: Iterable[pa.Table]) -> tuple[pa.Table | None, Iterator[pa.Table]]:
    """The first non-empty table and an iterator that still yields it."""
    iterator = iter(tables)
    for table in iterator:
        if table.num_rows:

            def chained(first: pa.Table = table) -> Iterator[pa.Table]:
                yield first
                yield from iterator

            return table, chained()
    return None, iter(())


def widen(dtype: pa.DataType) -> pa.DataType:
    """One type per kind, whatever width a batch happened to arrive in."""
    if pa.types.is_integer(dtype):
        return pa.int64()
    if pa.types.is_floating(dtype):
        return pa.float64()
    if pa.types.is_timestamp(dtype):
        return TIMESTAMP
    if pa.types.is_large_string(dtype) or pa.types.is_string_view(dtype):
        return pa.string()
    return dtype


def query_text(mapping: Mapping) -> str:
    """The user's query as the warehouse should run it (without a trailing semicolon)."""
    assert mapping.query is not None
    return mapping.query.strip().rstrip(";").strip()


def rename_to_mapping(names: list[str], mapping: Mapping) -> list[str]:
    """Result columns named like the mapping's (warehouses upper-case unquoted aliases)."""
    folded = {c.casefold(): c for c in mapping.columns}
    return [n if n in mapping.columns else folded.get(n.casefold(), n) for n in names]


def limit_sql(limit: int | None) -> str:
    return f" LIMIT {int(limit)}" if limit is not None else ""


_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def plain_identifier(name: str) -> bool:
    return bool(_PLAIN.match(name))


def string_literal(text: str) -> str:
    """A single-quoted SQL string; both warehouses read backslash escapes."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True)
class SQLInspection:
    """A mapping's table as "Test mapping" saw it: ``table`` is None for a query, ``found``
    is what the kind's ``_inspect_table`` read."""

    mapping: Mapping
    table: Any
    found: Any


class TableName(Protocol):
    """A table reference of one warehouse; ``sql`` names it in statements."""

    @property
    def sql(self) -> str: ...


Ref = TypeVar("Ref", bound=TableName)


class SQLWarehouse(FromSpec, ABC, Generic[Ref]):
    """The plumbing of a source over a DB-API connection, whatever its SQL: one connection
    opened on first use, driver errors as the errors users act on, Arrow readers over
    results, and the query form (a snapshot diff of the user's SELECT)."""

    #: the warehouse's name in messages
    warehouse: ClassVar[str]
    supports_cdc: ClassVar[bool] = True
    supports_query: ClassVar[bool] = True
    holds_server_resources: ClassVar[bool] = False

    def __init__(self, connection: Connection, source_name: str = "") -> None:
        self.config = connection.config
        self.source_name = source_name
        self._connection: Any = None

    # -- what each warehouse supplies ---------------------------------------------------
    @abstractmethod
    def _connect(self) -> Any:
        """A new DB-API connection from the official connector."""

    @abstractmethod
    def _known_error(self, text: str, where: str) -> ProfilesyncError | None:
        """The error a driver message means, where the warehouse says more than PEP 249."""

    @abstractmethod
    def _arrow_tables(self, cursor: Any) -> Iterable[pa.Table]:
        """The executed cursor's result as Arrow tables."""

    @abstractmethod
    def _result_type(self, column: Any) -> pa.DataType:
        """The Arrow type of a ``cursor.description`` column."""

    @abstractmethod
    def table_ref(self, table: str) -> Ref:
        """A table name as users write it (``schema.table``, or fully qualified)."""

    @abstractmethod
    def _inspect_table(self, table: Ref) -> Any:
        """What the checks need to know of ``table``, read in one go (the kind's own type)."""

    @abstractmethod
    def _judge_table(
        self, table: Ref, found: Any, frequency_seconds: int
    ) -> tuple[Check, list[Check]]:
        """The "table" check, and the change tracking and retention checks for CDC: pure
        rules over what :meth:`_inspect_table` found."""

    @abstractmethod
    def _columns(self, table: Ref) -> dict[str, pa.DataType]:
        """Stored column name -> Arrow type, in table order."""

    @abstractmethod
    def _quote(self, name: str) -> str:
        """A column name as SQL that keeps its exact spelling."""

    # -- statements -------------------------------------------------------------------
    def _cursor(self) -> Any:
        if self._connection is None:
            try:
                self._connection = self._connect()
            except ProfilesyncError:
                raise
            except Exception as exc:
                # connectors also raise their HTTP library's errors while connecting
                raise connect_error(exc, self.warehouse) from exc
        return self._connection.cursor()

    def _run(self, sql: str, table: Ref | None = None) -> Any:
        cursor = self._cursor()
        try:
            cursor.execute(sql)
        except Exception as exc:
            if not is_driver_error(exc):
                raise
            raise self._translate(exc, table) from exc
        return cursor

    def _rows(self, sql: str, table: Ref | None = None) -> list[Row]:
        return fetch_rows(self._run(sql, table))

    def _translate(self, exc: BaseException, table: Ref | None = None) -> ProfilesyncError:
        text = " ".join(str(exc).split())
        where = table.sql if table else "the table"
        return self._known_error(text, where) or driver_error(exc, self.warehouse)

    def _reader(
        self,
        tables: Iterable[pa.Table],
        schema: pa.Schema,
        convert: Callable[[pa.Table], pa.Table],
        table: Ref | None,
    ) -> pa.RecordBatchReader:
        def translate(exc: BaseException) -> BaseException | None:
            return self._translate(exc, table) if is_driver_error(exc) else None

        return arrow_reader(tables, schema, convert, translate)

    def _stream(
        self,
        sql: str,
        table: Ref,
        schema: pa.Schema,
        convert: Callable[[pa.Table], pa.Table],
    ) -> pa.RecordBatchReader:
        """Run ``sql`` and read its result as ``schema`` batches made by ``convert``."""
        return self._reader(self._arrow_tables(self._run(sql, table)), schema, convert, table)

    # -- test mapping and reading -----------------------------------------------------
    def inspect(self, mapping: Mapping, strategy: str = "cdc") -> SQLInspection:
        """One look at the mapped table (none for a query) for "Test mapping"."""
        if mapping.table == QUERY_TABLE:
            return SQLInspection(mapping, None, None)
        table = self.table_ref(mapping.table)
        return SQLInspection(mapping, table, self._inspect_table(table))

    def judge(
        self, inspection: SQLInspection, frequency_seconds: int, strategy: str
    ) -> list[Check]:
        """The checks for ``inspection``; no query runs."""
        if inspection.table is None:
            return [Check("query", "info", QUERY_NOTE)]
        found, tracking = self._judge_table(inspection.table, inspection.found, frequency_seconds)
        if strategy == "diff":
            return [found, Check("strategy", "info", DIFF_NOTE)]
        return [found, *tracking]

    def check(self, mapping: Mapping, frequency_seconds: int, strategy: str) -> list[Check]:
        return self.judge(self.inspect(mapping, strategy), frequency_seconds, strategy)

    def _projection(self, table: Ref, mapping: Mapping) -> tuple[pa.Schema, str]:
        """The Arrow schema of the mapped columns and the SELECT list that reads them."""
        columns = self._columns(table)
        real = resolve_columns(mapping.columns, columns, table.sql)
        schema = pa.schema([(c, columns[real[c]]) for c in mapping.columns])
        select = ", ".join(f"{self._quote(real[c])} AS {self._quote(c)}" for c in mapping.columns)
        return schema, select

    def _query_snapshot(self, mapping: Mapping, limit: int | None, position: str) -> Changes:
        """The user's query as written; the result's types come from its first batch."""
        sql = query_text(mapping)
        if limit is not None:
            sql = f"SELECT * FROM ({sql}) AS q{limit_sql(limit)}"
        cursor = self._run(sql)
        names = rename_to_mapping([d[0] for d in cursor.description], mapping)
        first, tables = peek(self._arrow_tables(cursor))
        if first is None:
            types = [self._result_type(d) for d in cursor.description]
        else:
            types = [widen(t) for t in first.schema.types]
        schema = pa.schema(list(zip(names, types, strict=True)))
        reader = self._reader(
            tables, schema, lambda t: conform(t.rename_columns(names), schema), None
        )
        return Changes(reader, Checkpoint(position, "query"), full=True)

    def release(self, mapping: Mapping) -> None:
        return None

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


#: the name before warehouses got a folder each; kept for one release
SQLWarehouseSource = SQLWarehouse
