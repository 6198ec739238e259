"""What the Postgres catalog says about a table: its OID, kind, typed columns, replica identity.

Columns travel as Postgres' text output (what COPY and wal2json both write) and are typed
by the same DuckDB casts whichever way they came, so snapshot and change values agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import sqlglot
from sqlglot import exp

from profilesync.errors import NotFoundError
from profilesync.mapping import quote
from profilesync.model import Mapping
from profilesync.warehouses.postgres.driver import scalar

if TYPE_CHECKING:
    import psycopg

_ARROW = {
    "string": pa.string(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "date": pa.date32(),
}
_KINDS = {
    "int2": "int16",
    "int4": "int32",
    "int8": "int64",
    "oid": "int64",
    "float4": "float64",
    "float8": "float64",
    "numeric": "float64",
    "bool": "bool",
    "timestamp": "timestamp",
    "timestamptz": "timestamp",
    "date": "date",
}
#: DuckDB casts from Postgres' text output (``{}`` is the text). Values JSON cannot hold
#: (NaN, infinities) become NULL, as wal2json writes them.
_CASTS = {
    "string": "{}",
    "int16": "CAST({} AS SMALLINT)",
    "int32": "CAST({} AS INTEGER)",
    "int64": "CAST({} AS BIGINT)",
    "float64": "CASE WHEN lower({}) IN ('nan', 'infinity', '-infinity') THEN NULL ELSE CAST({} AS DOUBLE) END",
    "bool": "CAST({} AS BOOLEAN)",
    "timestamp": "CASE WHEN {} IN ('infinity', '-infinity') THEN NULL ELSE TRY_CAST({} AS TIMESTAMPTZ) END",
    "date": "CASE WHEN {} IN ('infinity', '-infinity') THEN NULL ELSE TRY_CAST({} AS DATE) END",
    # a timestamp without time zone is read as UTC wall-clock time
    "naive": "CASE WHEN {} IN ('infinity', '-infinity') THEN NULL "
    "ELSE timezone('UTC', TRY_CAST({} AS TIMESTAMP)) END",
}


@dataclass(frozen=True)
class Column:
    """A column and how it travels: Postgres type name, Arrow kind, and ``timestamp`` vs ``timestamptz``."""

    name: str
    typname: str

    @property
    def kind(self) -> str:
        return _KINDS.get(self.typname, "string")

    @property
    def arrow(self) -> pa.DataType:
        return _ARROW[self.kind]

    @property
    def naive(self) -> bool:
        return self.typname == "timestamp"

    def text(self) -> str:
        """Postgres SQL for the column's text form as its output function writes it (what
        wal2json sends): ``::text`` would trim ``char(n)`` padding."""
        column = quote(self.name)
        if self.typname == "bpchar":
            return f"CASE WHEN {column} IS NOT NULL THEN format('%s', {column}) END"
        return f"{column}::text"

    def cast(self, text: str) -> str:
        """DuckDB SQL turning this column's Postgres text form ``text`` into its value."""
        return _CASTS["naive" if self.naive else self.kind].replace("{}", text)


@dataclass(frozen=True)
class Relation:
    """A table as found in the catalog."""

    oid: int
    schema: str
    name: str
    kind: str  # pg_class.relkind
    columns: tuple[Column, ...]

    @property
    def qualified(self) -> str:
        return f"{quote(self.schema)}.{quote(self.name)}"

    @property
    def label(self) -> str:
        return table_label(self.schema, self.name)


def table_label(schema: str, name: str) -> str:
    """``schema.table``, both parts quoted where a dot or quote would make it ambiguous."""
    if any("." in p or '"' in p for p in (schema, name)):
        return f"{quote(schema)}.{quote(name)}"
    return f"{schema}.{name}"


def split_table(table: str) -> tuple[str, str]:
    """``schema.table`` (parts may be double-quoted) -> ``(schema, table)``; no schema: ``""``."""
    if '"' not in table:
        schema, _, name = table.partition(".")
        return (schema, name) if name else ("", schema)
    parsed = exp.to_table(table, dialect="postgres")
    return parsed.db, parsed.name


def list_tables(conn: psycopg.Connection[Any]) -> list[str]:
    """Tables, views and foreign tables outside the system schemas, as ``schema.table``."""
    cur = conn.execute(
        """SELECT n.nspname, c.relname FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
             AND n.nspname NOT IN ('pg_catalog', 'information_schema')
             AND n.nspname NOT LIKE 'pg\\_%'
           ORDER BY 1, 2"""
    )
    return [table_label(schema, name) for schema, name in cur.fetchall()]


def find_relation(conn: psycopg.Connection[Any], table: str) -> Relation:
    """The table ``schema.table`` (or a bare name on the search path) in the catalog."""
    schema, name = split_table(table)
    where = (
        "n.nspname = %s AND c.relname = %s" if schema else "c.oid = to_regclass(quote_ident(%s))"
    )
    row = conn.execute(
        f"""SELECT c.oid, n.nspname, c.relname, c.relkind FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {where}""",
        [schema, name] if schema else [name],
    ).fetchone()
    if row is None:
        raise NotFoundError(
            f"table {table!r} not found in PostgreSQL (name it schema.table; "
            "`profilesync connection tables NAME` lists them)",
            ui_fix="Choose a table from the list",
        )
    columns = conn.execute(
        """SELECT a.attname, coalesce(nullif(b.typname, ''), t.typname) FROM pg_attribute a
           JOIN pg_type t ON t.oid = a.atttypid LEFT JOIN pg_type b ON b.oid = t.typbasetype
           WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum""",
        [row[0]],
    ).fetchall()
    return Relation(int(row[0]), row[1], row[2], row[3], tuple(Column(*c) for c in columns))


def query_columns(conn: psycopg.Connection[Any], query: str) -> tuple[Column, ...]:
    """Output columns of a query, typed through the catalog (the query is not run)."""
    cur = conn.execute(f"SELECT * FROM ({query}) AS q LIMIT 0")
    oids = [d.type_code for d in cur.description or []]
    names = dict(
        conn.execute(
            """SELECT t.oid, coalesce(nullif(b.typname, ''), t.typname) FROM pg_type t
               LEFT JOIN pg_type b ON b.oid = t.typbasetype WHERE t.oid = ANY(%s)""",
            [oids],
        ).fetchall()
    )
    return tuple(Column(d.name, names.get(d.type_code, "text")) for d in cur.description or [])


def replica_identity(conn: psycopg.Connection[Any], relation: Relation) -> tuple[str, list[str]]:
    """``relreplident`` and the columns its old rows carry (primary key or chosen index)."""
    mode = str(scalar(conn, "SELECT relreplident FROM pg_class WHERE oid = %s", [relation.oid]))
    flag = "indisprimary" if mode == "d" else "indisreplident"
    rows = conn.execute(
        f"""SELECT a.attname FROM pg_index i
            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
            WHERE i.indrelid = %s AND i.{flag} ORDER BY array_position(i.indkey, a.attnum)""",
        [relation.oid],
    ).fetchall()
    return mode, [r[0] for r in rows]


def pick(columns: tuple[Column, ...], names: tuple[str, ...], where: str) -> tuple[Column, ...]:
    by_name = {c.name: c for c in columns}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise NotFoundError(
            f"{where} has no column(s) {', '.join(missing)} (it has: {', '.join(by_name)})"
        )
    return tuple(by_name[n] for n in names)


def user_id_columns(mapping: Mapping) -> set[str]:
    """The table columns the ``user_id`` expression reads."""
    parsed = sqlglot.parse_one(mapping.user_id, read="duckdb")
    return {c.name for c in parsed.find_all(exp.Column)}
