"""Stand-ins for Snowflake and Databricks SQL warehouses, which cannot be reached from the
machines these tests run on.

Each fake keeps its tables in memory with their whole history and answers the statements
the profilesync sources send through a DB-API connection, the way the official connectors
hand results over: metadata rows through ``fetchall``/``fetchone`` and data as Arrow
tables (``fetch_arrow_batches`` for Snowflake, ``fetchmany_arrow`` for Databricks). The
result shapes (column names, order and types) come from ``recorded/*.json``, which
transcribe what the real services return; the values come from the fake's tables.

Every statement is first parsed with sqlglot in the warehouse's dialect and answered from
the parse tree, so a statement the dialect cannot read fails the test. These fakes are
not a warehouse: they implement the few statements the sources send, the change
semantics the services document (Snowflake's net ``CHANGES``, Delta's change data feed)
and the errors they answer with when history is gone.
"""

from __future__ import annotations

import itertools
import json
import re
import types
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import sqlglot
from sqlglot import exp

RECORDED = Path(__file__).parent / "recorded"
Row = dict[str, Any]

#: Statements sqlglot 30 cannot parse in the databricks dialect: ``DESCRIBE DETAIL`` raises
#: a ParseError and ``SHOW TABLES IN`` falls back to an opaque Command. For these the
#: fixed prefix is compared and the rest is parsed as a table name in the dialect.
UNPARSED = {"snowflake": (), "databricks": ("DESCRIBE DETAIL ", "SHOW TABLES IN ")}


@cache
def recorded(name: str) -> dict[str, Any]:
    """One recorded result shape from ``recorded/<name>.json``."""
    data: dict[str, Any] = json.loads((RECORDED / f"{name}.json").read_text())
    return data


def parse_statement(sql: str, dialect: str) -> exp.Expression:
    """sqlglot's tree for ``sql``; fails for a statement the dialect only keeps as text."""
    for prefix in UNPARSED[dialect]:
        if sql.startswith(prefix):
            table = sqlglot.parse_one(sql[len(prefix) :], read=dialect, into=exp.Table)
            return exp.Command(this=prefix.strip(), expression=table)
    tree = sqlglot.parse_one(sql, read=dialect)
    assert not isinstance(tree, exp.Command), f"sqlglot ({dialect}) could not parse: {sql}"
    return tree


def decode(value: Any, type_text: str) -> Any:
    """A recorded JSON value as the connector returns it (timestamps become datetimes)."""
    if value is None or not isinstance(value, str) or "TIMESTAMP" not in type_text.upper():
        return value
    for fmt in ("%Y-%m-%d %H:%M:%S.%f %z", "%Y-%m-%d %H:%M:%S %z"):
        try:
            return datetime.strptime(value, fmt)
        except ValueError:
            pass
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def recorded_rows(name: str) -> list[Row]:
    shape = recorded(name)
    return [
        {c["name"]: decode(v, c["type"]) for c, v in zip(shape["columns"], row, strict=True)}
        for row in shape["rows"]
    ]


def recorded_arrow(name: str) -> pa.Table:
    """The recorded rows as the Arrow table the connector would hand over."""
    shape = recorded(name)
    arrays = {}
    for index, column in enumerate(shape["columns"]):
        values = [decode(row[index], column["type"]) for row in shape["rows"]]
        arrays[column["name"]] = pa.array(values, _arrow_type_named(column["arrow"]))
    return pa.table(arrays)


def _arrow_type_named(text: str) -> pa.DataType:
    match = re.match(r"timestamp\[(\w+)(?:, tz=(.+))?\]", text)
    if match:
        return pa.timestamp(match.group(1), tz=match.group(2))
    return pa.type_for_alias(text)


# -- PEP 249 errors, named as the connectors name them -------------------------------------


class Error(Exception):
    """Root of DB-API errors (every connector has a class of this name)."""


class DatabaseError(Error):
    pass


class ProgrammingError(DatabaseError):
    """What snowflake-connector-python raises for SQL errors."""


class OperationalError(DatabaseError):
    pass


class ServerOperationError(DatabaseError):
    """What databricks-sql-connector raises for SQL errors."""


# -- cursors and connections -----------------------------------------------------------


@dataclass
class Result:
    description: list[tuple[Any, ...]]
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    tables: list[pa.Table] | None = None  # data results, chunked as the service sends them
    schema: pa.Schema | None = None


class FakeCursor:
    def __init__(self, service: FakeService) -> None:
        self.service = service
        self.result: Result | None = None
        self._row = 0

    def execute(self, sql: str) -> FakeCursor:
        self.service.statements.append(sql)
        self.result = self.service.answer(sql)
        self._row = 0
        return self

    @property
    def description(self) -> list[tuple[Any, ...]] | None:
        return self.result.description if self.result else None

    def _rows(self) -> list[tuple[Any, ...]]:
        assert self.result is not None, "no statement executed"
        if self.result.tables is not None:
            return [tuple(r.values()) for t in self.result.tables for r in t.to_pylist()]
        return self.result.rows

    def fetchone(self) -> tuple[Any, ...] | None:
        rows = self._rows()
        if self._row >= len(rows):
            return None
        self._row += 1
        return rows[self._row - 1]

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows = self._rows()[self._row :]
        self._row += len(rows)
        return rows

    # snowflake-connector-python
    def fetch_arrow_batches(self) -> Iterator[pa.Table]:
        assert self.result is not None and self.result.tables is not None
        yield from self.service.stream(self.result.tables)

    # databricks-sql-connector
    def fetchmany_arrow(self, size: int) -> pa.Table:
        assert self.result is not None and self.result.tables is not None
        assert self.result.schema is not None
        whole = pa.concat_tables(self.result.tables) if self.result.tables else None
        if whole is None or self._row >= whole.num_rows:
            return self.result.schema.empty_table()
        part = whole.slice(self._row, size)
        self._row += part.num_rows
        self.service.check_readable()
        return part

    def close(self) -> None:
        self.result = None


class FakeConnection:
    def __init__(self, service: FakeService, config: dict[str, Any]) -> None:
        self.service = service
        self.config = config
        self.closed = False

    def cursor(self) -> FakeCursor:
        assert not self.closed, "cursor() on a closed connection"
        return FakeCursor(self.service)

    def close(self) -> None:
        self.closed = True


class FakeService:
    """What both fakes share: a clock, recorded statements, connections, chunking."""

    dialect = ""

    def __init__(self, batch_rows: int = 2) -> None:
        self.now = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
        self.statements: list[str] = []
        self.connections: list[FakeConnection] = []
        self.batch_rows = batch_rows
        self.fail_while_reading: Exception | None = None

    def tick(self, seconds: float = 1.0) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now

    def connect(self, config: dict[str, Any]) -> FakeConnection:
        connection = FakeConnection(self, config)
        self.connections.append(connection)
        return connection

    def answer(self, sql: str) -> Result:
        raise NotImplementedError

    def chunks(self, table: pa.Table) -> list[pa.Table]:
        if table.num_rows == 0:
            return []
        return [table.slice(i, self.batch_rows) for i in range(0, table.num_rows, self.batch_rows)]

    def stream(self, tables: list[pa.Table]) -> Iterator[pa.Table]:
        for table in tables:
            self.check_readable()
            yield table

    def check_readable(self) -> None:
        """Services may fail while results stream (a vacuumed file is found missing late)."""
        if self.fail_while_reading is not None:
            raise self.fail_while_reading

    def parsed(self, dialect: str) -> list[exp.Expression]:
        return [parse_statement(s, dialect) for s in self.statements]


def _like(pattern: str) -> re.Pattern[str]:
    """SHOW ... LIKE: case-insensitive, ``%`` any run, ``_`` any one character."""
    regex = "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern)
    return re.compile(f"^{regex}$", re.IGNORECASE)


def _literal_text(node: exp.Expression | None) -> str:
    while isinstance(node, exp.Cast):
        node = node.this
    assert isinstance(node, exp.Literal), f"expected a literal, got {node!r}"
    return str(node.this)


def _run_duckdb(tree: exp.Expression, tables: dict[str, pa.Table]) -> pa.Table:
    """Evaluate a query over the fake's current tables (the stand-in for the engine)."""
    con = duckdb.connect()
    try:
        for name, data in tables.items():
            con.register(name, data)
        return con.execute(tree.sql("duckdb")).to_arrow_table()
    finally:
        con.close()


def connector_modules(service: FakeService) -> dict[str, types.ModuleType]:
    """``sys.modules`` entries that make the source's own ``connect`` reach ``service``:
    ``snowflake.connector`` or ``databricks.sql`` with a ``connect(**params)``."""
    package, module = {
        "snowflake": ("snowflake", "connector"),
        "databricks": ("databricks", "sql"),
    }[service.dialect]
    inner = types.ModuleType(f"{package}.{module}")
    inner.connect = service.connect  # type: ignore[attr-defined]
    outer = types.ModuleType(package)
    setattr(outer, module, inner)
    return {package: outer, f"{package}.{module}": inner}


# -- Snowflake ---------------------------------------------------------------------------

_SF_TYPE_CODES = {"FIXED": 0, "REAL": 1, "TEXT": 2, "TIMESTAMP_LTZ": 6, "BOOLEAN": 13}


@dataclass
class SnowflakeTable:
    database: str
    schema: str
    name: str
    columns: dict[str, str]  # stored column name -> Snowflake type text
    created_on: datetime
    versions: list[tuple[datetime, dict[int, Row]]]  # (commit time, row id -> row)
    tracking: list[tuple[datetime, bool]]  # change tracking switched on/off at
    retention_days: int
    purged_before: datetime | None = None  # history dropped (retention lowered and raised)

    def state(self, at: datetime) -> dict[int, Row]:
        current: dict[int, Row] = {}
        for when, rows in self.versions:
            if when <= at:
                current = rows
        return current

    def tracked(self, at: datetime) -> bool:
        on = False
        for when, value in self.tracking:
            if when <= at:
                on = value
        return on


class FakeSnowflake(FakeService):
    """Stands in for a Snowflake account (which cannot be reached from here): tables with
    Time Travel history and change tracking, answering the Snowflake source's statements."""

    dialect = "snowflake"

    def __init__(self, database: str = "ANALYTICS", batch_rows: int = 2) -> None:
        super().__init__(batch_rows)
        self.database = database
        self.tables: dict[tuple[str, str], SnowflakeTable] = {}
        self.replays: dict[str, str] = {}  # statement kind -> recorded result answered verbatim
        self._row_ids = itertools.count(1)

    # -- what users do in Snowflake ------------------------------------------------
    def create_table(
        self,
        name: str,
        columns: dict[str, str],
        rows: list[Row],
        *,
        schema: str = "PUBLIC",
        change_tracking: bool = True,
        retention_days: int = 1,
    ) -> SnowflakeTable:
        created = self.tick()
        table = SnowflakeTable(
            self.database,
            schema,
            name,
            dict(columns),
            created,
            [(created, {next(self._row_ids): dict(r) for r in rows})],
            [(created, change_tracking)],
            retention_days,
        )
        self.tables[(schema, name)] = table
        return table

    def table(self, name: str, schema: str = "PUBLIC") -> SnowflakeTable:
        return self.tables[(schema, name)]

    def _write(self, table: SnowflakeTable, rows: dict[int, Row]) -> None:
        table.versions.append((self.tick(), rows))

    def insert(self, name: str, rows: list[Row]) -> None:
        table = self.table(name)
        current = dict(table.versions[-1][1])
        current.update({next(self._row_ids): dict(r) for r in rows})
        self._write(table, current)

    def update(self, name: str, key: str, value: Any, changes: Row) -> None:
        table = self.table(name)
        current = {
            rid: ({**row, **changes} if row[key] == value else row)
            for rid, row in table.versions[-1][1].items()
        }
        self._write(table, current)

    def delete(self, name: str, key: str, value: Any) -> None:
        table = self.table(name)
        current = {rid: row for rid, row in table.versions[-1][1].items() if row[key] != value}
        self._write(table, current)

    def replace_table(self, name: str, rows: list[Row]) -> SnowflakeTable:
        """CREATE OR REPLACE TABLE ... (a dbt full refresh): a new table object."""
        old = self.table(name)
        return self.create_table(
            name,
            old.columns,
            rows,
            schema=old.schema,
            change_tracking=old.tracked(self.now),
            retention_days=old.retention_days,
        )

    def set_change_tracking(self, name: str, on: bool) -> None:
        self.table(name).tracking.append((self.tick(), on))

    def set_retention(self, name: str, days: int) -> None:
        self.table(name).retention_days = days

    def purge_history(self, name: str) -> None:
        """Time Travel data before now is gone (e.g. the retention was lowered for a while)."""
        self.table(name).purged_before = self.tick()

    def replay(self, kind: str, shape: str) -> None:
        """Answer every ``kind`` statement ("SHOW", "DESCRIBE") with a recorded result as is."""
        self.replays[kind] = shape

    def rows(self, name: str) -> list[Row]:
        return list(self.table(name).versions[-1][1].values())

    # -- what the connector sees -------------------------------------------------
    def connect(self, **params: Any) -> FakeConnection:
        """``snowflake.connector.connect``: the answers assume a UTC session with exact decimals."""
        assert params.get("account") and params.get("user"), params
        assert params.get("session_parameters") == {"TIMEZONE": "UTC"}, params
        assert params.get("arrow_number_to_decimal") is True, params
        return super().connect(params)

    def answer(self, sql: str) -> Result:
        tree = parse_statement(sql, "snowflake")
        kind = type(tree).__name__.upper()
        if kind in self.replays:
            return self._recorded_result(self.replays[kind])
        if isinstance(tree, exp.Show):
            return self._show(tree)
        if isinstance(tree, exp.Describe):
            return self._describe(tree)
        if isinstance(tree, exp.Select) and isinstance(tree.selects[0], exp.CurrentTimestamp):
            return Result([("CURRENT_TIMESTAMP()", 6, None, None, 0, 9, False)], [(self.now,)])
        if isinstance(tree, exp.Query):
            return self._select(tree)
        raise ProgrammingError(f"the Snowflake stand-in does not answer: {sql}")

    def _recorded_result(self, name: str) -> Result:
        shape = recorded(name)
        description = [
            (c["name"], _SF_TYPE_CODES.get(c["type"], 2), None, None, None, 0, True)
            for c in shape["columns"]
        ]
        return Result(description, [tuple(r.values()) for r in recorded_rows(name)])

    def _metadata(self, shape: str, rows: list[Row]) -> Result:
        result = self._recorded_result(shape)
        names = [d[0] for d in result.description]
        template = recorded_rows(shape)[0]
        return Result(
            result.description, [tuple({**template, **r}[n] for n in names) for r in rows]
        )

    def _find(self, node: exp.Table) -> SnowflakeTable:
        def stored(ident: Any, default: str) -> str:
            if not isinstance(ident, exp.Identifier):
                return default
            return ident.name if ident.quoted else ident.name.upper()

        database = stored(node.args.get("catalog"), self.database)
        schema = stored(node.args.get("db"), "PUBLIC")
        name = stored(node.this, "")
        table = self.tables.get((schema, name))
        if table is None or database != self.database:
            raise ProgrammingError(
                recorded("snowflake_errors")["not_found"]["msg"].format(
                    table=f"{database}.{schema}.{name}"
                )
            )
        return table

    def _show(self, tree: exp.Show) -> Result:
        assert tree.name == "TABLES", tree
        scope = tree.args["scope"]
        if tree.args.get("scope_kind") == "SCHEMA":
            schemas = {scope.name.upper()}
        else:
            schemas = {t.schema for t in self.tables.values()}
        like = tree.args.get("like")
        pattern = _like(like.name) if like is not None else None
        rows = [
            {
                "created_on": t.created_on,
                "name": t.name,
                "database_name": t.database,
                "schema_name": t.schema,
                "rows": len(t.versions[-1][1]),
                "retention_time": str(t.retention_days),
                "change_tracking": "ON" if t.tracked(self.now) else "OFF",
            }
            for t in self.tables.values()
            if t.schema in schemas and (pattern is None or pattern.match(t.name))
        ]
        return self._metadata("snowflake_show_tables", rows)

    def _describe(self, tree: exp.Describe) -> Result:
        table = self._find(tree.this)
        rows = [
            {"name": name, "type": type_text, "kind": "COLUMN", "null?": "Y", "primary key": "N"}
            for name, type_text in table.columns.items()
        ]
        return self._metadata("snowflake_describe_table", rows)

    def _time_travel(self, table: SnowflakeTable, at: datetime) -> None:
        oldest = max(
            table.created_on,
            self.now - timedelta(days=table.retention_days),
            table.purged_before or table.created_on,
        )
        if table.retention_days == 0 or at < oldest or at > self.now:
            raise ProgrammingError(
                recorded("snowflake_errors")["time_travel"]["msg"].format(table=table.name)
            )

    def _select(self, tree: exp.Query) -> Result:
        node = tree.args["from_"].this if isinstance(tree, exp.Select) else None
        plain = (
            isinstance(tree, exp.Select)
            and isinstance(node, exp.Table)
            and not tree.args.get("joins")
            and not tree.args.get("where")
        )
        if not plain:
            return self._query(tree)
        assert isinstance(tree, exp.Select) and isinstance(node, exp.Table)
        table = self._find(node)
        changes, when = node.args.get("changes"), node.args.get("when")
        if changes is not None:
            data = self._changes(table, changes)
        else:
            at = self.now
            if when is not None:
                assert when.this == "AT" and when.args["kind"] == "TIMESTAMP", when
                at = datetime.fromisoformat(_literal_text(when.expression))
                self._time_travel(table, at)
            data = list(table.state(at).values())
        limit = tree.args.get("limit")
        if limit is not None:
            data = data[: int(limit.expression.name)]
        return self._project(table, tree, data)

    def _changes(self, table: SnowflakeTable, changes: exp.Changes) -> list[Row]:
        assert changes.args["information"].name == "DEFAULT", changes
        start = datetime.fromisoformat(_literal_text(changes.args["at_before"].expression))
        end = datetime.fromisoformat(_literal_text(changes.args["end"].expression))
        self._time_travel(table, start)
        switches = [when for when, _ in table.tracking if start < when <= end]
        if not all(table.tracked(t) for t in [start, *switches]):
            raise ProgrammingError(
                recorded("snowflake_errors")["change_tracking_missing"]["msg"].format(
                    table=table.name
                )
            )
        old, new = table.state(start), table.state(end)
        inserts, deletes = [], []
        for rid in sorted(old.keys() | new.keys()):
            before, after = old.get(rid), new.get(rid)
            if before == after:
                continue
            is_update = before is not None and after is not None
            meta = {"METADATA$ISUPDATE": is_update, "METADATA$ROW_ID": f"{rid:040x}"}
            if after is not None:
                inserts.append({**after, "METADATA$ACTION": "INSERT", **meta})
            if before is not None:
                deletes.append({**before, "METADATA$ACTION": "DELETE", **meta})
        # no order is promised: inserts first makes any reliance on row order visible
        return inserts + deletes

    def _project(self, table: SnowflakeTable, tree: exp.Select, data: list[Row]) -> Result:
        types = {**table.columns, **_METADATA}
        out: list[tuple[str, str, str]] = []  # (output name, stored column, type)
        for projection in tree.selects:
            if isinstance(projection, exp.Star):
                out.extend((c, c, t) for c, t in table.columns.items())
                continue
            column = projection.this if isinstance(projection, exp.Alias) else projection
            assert isinstance(column, exp.Column), projection
            stored = _stored(column.this)
            assert stored in types, f"no column {stored} in {table.name}"
            name = (
                _stored(projection.args["alias"]) if isinstance(projection, exp.Alias) else stored
            )
            out.append((name, stored, types[stored]))
        arrays = {name: [row.get(stored) for row in data] for name, stored, _ in out}
        chunks = []
        for start in range(0, len(data), self.batch_rows):
            chunk = {
                name: snowflake_arrow(values[start : start + self.batch_rows], types[stored])
                for (name, stored, _), values in zip(out, arrays.values(), strict=True)
            }
            chunks.append(pa.table(chunk))
        description = [
            (name, _sf_code(t), None, None, *_sf_precision(t), True) for name, _, t in out
        ]
        return Result(description, tables=chunks)

    def _query(self, tree: exp.Query) -> Result:
        """Any other SELECT (the query form): evaluated over the current tables."""
        registered: dict[str, pa.Table] = {}
        tree = tree.copy()
        for node in list(tree.find_all(exp.Table)):
            table = self._find(node)
            alias = f"t_{table.schema}_{table.name}".lower()
            registered[alias] = pa.Table.from_pylist(
                list(table.state(self.now).values()),
                schema=pa.schema(
                    [
                        (c, snowflake_arrow([], t, widest=True).type)
                        for c, t in table.columns.items()
                    ]
                ),
            )
            node.replace(exp.to_table(alias).as_(node.alias_or_name))
        result = _run_duckdb(tree, registered)
        names = _output_names(tree) or result.column_names
        result = result.rename_columns(names)
        description = [(n, 2, None, None, None, 0, True) for n in names]
        return Result(description, tables=self.chunks(result))


_METADATA = {"METADATA$ACTION": "TEXT", "METADATA$ISUPDATE": "BOOLEAN", "METADATA$ROW_ID": "TEXT"}


def _stored(ident: exp.Expression) -> str:
    assert isinstance(ident, exp.Identifier), ident
    return ident.name if ident.quoted else ident.name.upper()


def _output_names(tree: exp.Query) -> list[str] | None:
    """Snowflake names result columns like identifiers: unquoted aliases in upper case."""
    selects = tree.selects
    if len(selects) == 1 and isinstance(selects[0], exp.Star):
        inner = tree.args["from_"].this if isinstance(tree, exp.Select) else None
        return _output_names(inner.this) if isinstance(inner, exp.Subquery) else None
    names = []
    for projection in selects:
        ident = projection.args.get("alias") if isinstance(projection, exp.Alias) else None
        ident = ident or (projection.this if isinstance(projection, exp.Column) else None)
        if not isinstance(ident, exp.Identifier):
            return None
        names.append(_stored(ident))
    return names


def _sf_code(type_text: str) -> int:
    base = type_text.split("(")[0].upper()
    if base.startswith("NUMBER"):
        return 0
    return {
        "FLOAT": 1,
        "BOOLEAN": 13,
        "DATE": 3,
        "TIMESTAMP_LTZ": 6,
        "TIMESTAMP_TZ": 7,
        "TIMESTAMP_NTZ": 8,
        "VARIANT": 5,
    }.get(base, 2)


def _sf_precision(type_text: str) -> tuple[int | None, int | None]:
    match = re.match(r"NUMBER\((\d+),(\d+)\)", type_text.upper())
    return (int(match.group(1)), int(match.group(2))) if match else (None, None)


def snowflake_arrow(values: list[Any], type_text: str, widest: bool = False) -> pa.Array:
    """Values as fetch_arrow_batches() hands them over for a column of ``type_text``.

    ``NUMBER(p,0)`` comes in the narrowest integer type that holds the chunk (Snowflake
    sends each result chunk in its own physical width), scaled numbers as decimals (the
    source asks for ``arrow_number_to_decimal``), timestamps in nanoseconds.
    """
    base = type_text.split("(")[0].upper()
    precision, scale = _sf_precision(type_text)
    if base == "NUMBER" and not scale:
        if widest:
            return pa.array(values, pa.int64())
        present = [v for v in values if v is not None]
        for width in (pa.int8(), pa.int16(), pa.int32(), pa.int64()):
            info = _INT_RANGES[width]
            if all(info[0] <= v <= info[1] for v in present):
                return pa.array(values, width)
    if base == "NUMBER":
        return pa.array(values, pa.decimal128(precision or 38, scale or 0))
    typed = {
        "FLOAT": pa.float64(),
        "BOOLEAN": pa.bool_(),
        "DATE": pa.date32(),
        "TIMESTAMP_NTZ": pa.timestamp("ns"),
        "TIMESTAMP_LTZ": pa.timestamp("ns", tz="UTC"),
        "TIMESTAMP_TZ": pa.timestamp("ns", tz="UTC"),
    }.get(base, pa.string())
    return pa.array(values, typed)


_INT_RANGES = {
    pa.int8(): (-(2**7), 2**7 - 1),
    pa.int16(): (-(2**15), 2**15 - 1),
    pa.int32(): (-(2**31), 2**31 - 1),
    pa.int64(): (-(2**63), 2**63 - 1),
}


# -- Databricks ---------------------------------------------------------------------------


@dataclass
class DeltaCommit:
    version: int
    timestamp: datetime
    operation: str
    parameters: dict[str, Any]
    rows: list[Row]  # the table after this commit
    changes: list[tuple[str, Row]]  # change data feed rows of this commit
    properties: dict[str, str]


@dataclass
class DeltaTable:
    catalog: str
    schema: str
    name: str
    columns: dict[str, str]  # column -> Databricks type text
    id: str
    commits: list[DeltaCommit]
    oldest: int = 0  # the log before this version was cleaned up
    vacuumed_through: int = -1  # change data files of versions up to this one are gone

    @property
    def latest(self) -> DeltaCommit:
        return self.commits[-1]

    def commit(self, version: int) -> DeltaCommit:
        return next(c for c in self.commits if c.version == version)


class FakeDatabricks(FakeService):
    """Stands in for a Databricks SQL warehouse (which cannot be reached from here): Delta
    tables with versions, history and a change data feed, answering the Databricks source."""

    dialect = "databricks"

    def __init__(self, catalog: str = "main", batch_rows: int = 2) -> None:
        super().__init__(batch_rows)
        self.catalog = catalog
        self.tables: dict[tuple[str, str], DeltaTable] = {}
        self.replays: dict[str, str] = {}

    # -- what users do in Databricks ----------------------------------------------
    def create_table(
        self,
        name: str,
        columns: dict[str, str],
        rows: list[Row],
        *,
        schema: str = "crm",
        cdf: bool = True,
        properties: dict[str, str] | None = None,
    ) -> DeltaTable:
        props = {**({"delta.enableChangeDataFeed": "true"} if cdf else {}), **(properties or {})}
        table = DeltaTable(self.catalog, schema, name, dict(columns), str(uuid.uuid4()), [])
        self._commit(
            table,
            "CREATE TABLE AS SELECT",
            {
                "isManaged": "true",
                "description": None,
                "partitionBy": "[]",
                "properties": json.dumps(props),
            },
            [dict(r) for r in rows],
            [("insert", dict(r)) for r in rows],
            props,
        )
        self.tables[(schema, name)] = table
        return table

    def table(self, name: str, schema: str = "crm") -> DeltaTable:
        return self.tables[(schema, name)]

    def _commit(
        self,
        table: DeltaTable,
        operation: str,
        parameters: dict[str, Any],
        rows: list[Row],
        changes: list[tuple[str, Row]],
        properties: dict[str, str] | None = None,
    ) -> None:
        version = table.latest.version + 1 if table.commits else 0
        props = dict(table.latest.properties if properties is None else properties)
        table.commits.append(
            DeltaCommit(version, self.tick(), operation, parameters, rows, changes, props)
        )

    def insert(self, name: str, rows: list[Row]) -> None:
        table = self.table(name)
        self._commit(
            table,
            "WRITE",
            {"mode": "Append", "partitionBy": "[]"},
            [*table.latest.rows, *map(dict, rows)],
            [("insert", dict(r)) for r in rows],
        )

    def update(self, name: str, key: str, value: Any, changes: Row) -> None:
        table = self.table(name)
        rows, feed = [], []
        for row in table.latest.rows:
            if row[key] == value:
                new = {**row, **changes}
                feed += [("update_preimage", row), ("update_postimage", new)]
                rows.append(new)
            else:
                rows.append(row)
        self._commit(table, "UPDATE", {"predicate": f'["({key} = {value!r})"]'}, rows, feed)

    def delete(self, name: str, key: str, value: Any) -> None:
        table = self.table(name)
        gone = [r for r in table.latest.rows if r[key] == value]
        kept = [r for r in table.latest.rows if r[key] != value]
        self._commit(
            table,
            "DELETE",
            {"predicate": f'["({key} = {value!r})"]'},
            kept,
            [("delete", r) for r in gone],
        )

    def set_properties(self, name: str, properties: dict[str, str]) -> None:
        table = self.table(name)
        self._commit(
            table,
            "SET TBLPROPERTIES",
            {"properties": json.dumps(properties)},
            table.latest.rows,
            [],
            {**table.latest.properties, **properties},
        )

    def unset_properties(self, name: str, keys: list[str]) -> None:
        table = self.table(name)
        props = {k: v for k, v in table.latest.properties.items() if k not in keys}
        self._commit(
            table,
            "UNSET TBLPROPERTIES",
            {"propKeys": json.dumps(keys), "ifExists": "false"},
            table.latest.rows,
            [],
            props,
        )

    def create_or_replace(self, name: str, rows: list[Row]) -> None:
        """CREATE OR REPLACE TABLE ... AS SELECT: same Delta table, new content and history entry."""
        table = self.table(name)
        self._commit(
            table,
            "CREATE OR REPLACE TABLE AS SELECT",
            {
                "isManaged": "true",
                "partitionBy": "[]",
                "properties": json.dumps(table.latest.properties),
            },
            [dict(r) for r in rows],
            [("delete", r) for r in table.latest.rows] + [("insert", dict(r)) for r in rows],
        )

    def drop_and_create(self, name: str, rows: list[Row]) -> DeltaTable:
        """DROP TABLE then CREATE TABLE: a new table id and a history from version 0."""
        old = self.table(name)
        return self.create_table(
            name, old.columns, rows, schema=old.schema, properties=old.latest.properties
        )

    def clean_log(self, name: str, keep_from: int) -> None:
        """Log cleanup: history (and time travel) before ``keep_from`` is gone."""
        self.table(name).oldest = keep_from

    def vacuum(self, name: str) -> None:
        """VACUUM: change data files of every version so far are gone."""
        table = self.table(name)
        table.vacuumed_through = table.latest.version

    def replay(self, kind: str, shape: str) -> None:
        """Answer every ``kind`` statement ("DESCRIBE DETAIL", ...) with a recorded result."""
        self.replays[kind] = shape

    def rows(self, name: str) -> list[Row]:
        return list(self.table(name).latest.rows)

    # -- what the connector sees -------------------------------------------------
    def connect(self, **params: Any) -> FakeConnection:
        """``databricks.sql.connect``: the answers carry complex types as JSON text."""
        assert params.get("server_hostname") and params.get("http_path"), params
        assert params.get("access_token"), params
        assert params.get("_use_arrow_native_complex_types") is False, params
        return super().connect(params)

    def answer(self, sql: str) -> Result:
        tree = parse_statement(sql, "databricks")
        for kind, shape in self.replays.items():
            if sql.startswith(kind):
                return self._metadata(shape, None)
        if isinstance(tree, exp.Command):
            return self._command(tree)
        if isinstance(tree, exp.Describe):
            table = self._find(tree.this)
            if tree.args.get("style") == "HISTORY":
                return self._history(table)
            return self._describe(table)
        if isinstance(tree, exp.Query):
            return self._select(tree)
        raise ServerOperationError(f"the Databricks stand-in does not answer: {sql}")

    def _error(self, key: str, **values: Any) -> ServerOperationError:
        return ServerOperationError(recorded("databricks_errors")[key].format(**values))

    def _metadata(self, shape: str, rows: list[Row] | None) -> Result:
        columns = recorded(shape)["columns"]
        description = [(c["name"], c["type"], None, None, None, None, True) for c in columns]
        if rows is None:
            rows = recorded_rows(shape)
        return Result(description, [tuple(r.get(c["name"]) for c in columns) for r in rows])

    def _find(self, node: exp.Expression) -> DeltaTable:
        assert isinstance(node, exp.Table), node
        parts = [p.name for p in (node.args.get("catalog"), node.args.get("db"), node.this) if p]
        catalog, schema, name = ([self.catalog, "default"][: 3 - len(parts)] + parts)[-3:]
        table = self.tables.get((schema.lower(), name.lower()))
        if table is None or catalog.lower() != self.catalog:
            raise self._error("table_not_found", table=".".join(parts))
        return table

    def _command(self, tree: exp.Command) -> Result:
        if tree.name == "SHOW TABLES IN":
            schema = tree.expression.name.lower()  # "main.crm" parses as table crm in db main
            rows = [
                {"database": t.schema, "tableName": t.name, "isTemporary": False}
                for t in self.tables.values()
                if t.schema == schema
            ]
            return self._metadata("databricks_show_tables", rows)
        assert tree.name == "DESCRIBE DETAIL", tree
        table = self._find(tree.expression)
        first = table.commits[0]
        return self._metadata(
            "databricks_describe_detail",
            [
                {
                    "format": "delta",
                    "id": table.id,
                    "name": f"{table.catalog}.{table.schema}.{table.name}",
                    "location": f"s3://bucket/{table.schema}/{table.name}",
                    "createdAt": first.timestamp,
                    "lastModified": table.latest.timestamp,
                    "partitionColumns": "[]",
                    "numFiles": len(table.commits),
                    "properties": json.dumps(table.latest.properties),
                    "minReaderVersion": 1,
                    "minWriterVersion": 4,
                }
            ],
        )

    def _history(self, table: DeltaTable) -> Result:
        rows = [
            {
                "version": c.version,
                "timestamp": c.timestamp,
                "operation": c.operation,
                "operationParameters": json.dumps(c.parameters),
                "readVersion": c.version - 1 if c.version else None,
                "isolationLevel": "WriteSerializable",
                "isBlindAppend": c.operation == "WRITE",
            }
            for c in reversed(table.commits)
            if c.version >= table.oldest
        ]
        return self._metadata("databricks_describe_history", rows)

    def _describe(self, table: DeltaTable) -> Result:
        rows = [{"col_name": n, "data_type": t} for n, t in table.columns.items()]
        return self._metadata("databricks_describe_table", rows)

    def _version(self, table: DeltaTable, version: int) -> DeltaCommit:
        latest = table.latest.version
        if not table.oldest <= version <= latest:
            raise self._error(
                "version_not_found", version=version, earliest=table.oldest, latest=latest
            )
        return table.commit(version)

    def _select(self, tree: exp.Query) -> Result:
        node = tree.args["from_"].this if isinstance(tree, exp.Select) else None
        if (
            not isinstance(tree, exp.Select)
            or not isinstance(node, exp.Table)
            or tree.args.get("joins")
        ):
            return self._query(tree)
        if isinstance(node.this, exp.Anonymous):
            assert node.this.name.lower() == "table_changes", node
            return self._table_changes(tree, node.this)
        table = self._find(node)
        version = node.args.get("version")
        commit = self._version(table, int(version.expression.name)) if version else table.latest
        data = list(commit.rows)
        limit = tree.args.get("limit")
        if limit is not None:
            data = data[: int(limit.expression.name)]
        return self._project(tree, table.columns, data)

    def _table_changes(self, tree: exp.Select, call: exp.Anonymous) -> Result:
        name, start_node, end_node = call.expressions
        table = self._find(exp.to_table(name.name, dialect="databricks"))
        start, end = int(start_node.name), int(end_node.name)
        self._version(table, start)
        self._version(table, end)
        if start <= table.vacuumed_through:
            self.fail_while_reading = self._error(
                "change_file_not_found", path=f"s3://bucket/_change_data/cdc-{start:05d}.parquet"
            )
        data: list[Row] = []
        for version in range(end, start - 1, -1):  # newest first: no order is promised
            commit = table.commit(version)
            if commit.properties.get("delta.enableChangeDataFeed") != "true":
                raise self._error("missing_change_data", start=start, end=end, version=version)
            data += [
                {
                    **row,
                    "_change_type": kind,
                    "_commit_version": version,
                    "_commit_timestamp": commit.timestamp,
                }
                for kind, row in commit.changes
            ]
        types = {
            **table.columns,
            "_change_type": "string",
            "_commit_version": "bigint",
            "_commit_timestamp": "timestamp",
        }
        return self._project(tree, types, data)

    def _project(self, tree: exp.Select, types: dict[str, str], data: list[Row]) -> Result:
        folded = {c.lower(): c for c in types}
        out: list[tuple[str, str]] = []  # (output name, column)
        for projection in tree.selects:
            if isinstance(projection, exp.Star):
                out.extend((c, c) for c in types)
                continue
            column = projection.this if isinstance(projection, exp.Alias) else projection
            assert isinstance(column, exp.Column), projection
            real = folded[column.name.lower()]
            out.append((projection.alias_or_name, real))
        table = pa.table(
            {name: databricks_arrow([r.get(real) for r in data], types[real]) for name, real in out}
        )
        description = [(name, types[real], None, None, None, None, True) for name, real in out]
        return Result(description, tables=self.chunks(table), schema=table.schema)

    def _query(self, tree: exp.Query) -> Result:
        registered: dict[str, pa.Table] = {}
        tree = tree.copy()
        for node in list(tree.find_all(exp.Table)):
            table = self._find(node)
            alias = f"t_{table.schema}_{table.name}"
            registered[alias] = pa.table(
                {
                    c: databricks_arrow([r.get(c) for r in table.latest.rows], t)
                    for c, t in table.columns.items()
                }
            )
            node.replace(exp.to_table(alias).as_(node.alias_or_name))
        result = _run_duckdb(tree, registered)
        description = [(n, "string", None, None, None, None, True) for n in result.column_names]
        return Result(description, tables=self.chunks(result), schema=result.schema)


def databricks_arrow(values: list[Any], type_text: str) -> pa.Array:
    """Values as fetchmany_arrow() hands them over for a column of ``type_text``."""
    text = type_text.lower()
    base = text.split("(")[0].split("<")[0]
    if base == "decimal":
        precision, scale = (int(x) for x in text[len(base) :].strip("()").split(","))
        return pa.array(values, pa.decimal128(precision, scale))
    if base in ("array", "map", "struct"):  # complex types as JSON text
        return pa.array([None if v is None else json.dumps(v) for v in values], pa.string())
    typed: dict[str, pa.DataType] = {
        "bigint": pa.int64(),
        "int": pa.int32(),
        "smallint": pa.int16(),
        "tinyint": pa.int8(),
        "double": pa.float64(),
        "float": pa.float32(),
        "boolean": pa.bool_(),
        "date": pa.date32(),
        "timestamp": pa.timestamp("us", tz="Etc/UTC"),
    }
    return pa.array(values, typed.get(base, pa.string()))
