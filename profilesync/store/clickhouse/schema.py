"""The ClickHouse columns: events, and the types of profile properties (the statements
that make the tables are :mod:`.cluster`'s).

Property types are named as the DuckDB store names them (``VARCHAR``, ``DOUBLE``, ...)
everywhere a person or the query compiler sees them; each ClickHouse column keeps that
name in its comment, so the mapping back needs no guessing.
"""

from __future__ import annotations

import re

from sqlglot import exp

from profilesync.errors import ConfigurationError
from profilesync.events.fields import SPEC
from profilesync.store.clickhouse.driver import quote_name

EVENTS = "events"
#: the profile table's own columns (besides the properties)
OWN = ("user_id", "_synced_at", "_version", "_is_deleted")

#: ClickHouse columns of the kinds of event fields (``profilesync.events.fields.Field``)
_FIELD_KINDS = {
    "event_type": "String",
    "time": "DateTime64(6)",
    "id": "Nullable(String)",
    "text": "Nullable(String)",
    "object": "Nullable(String)",
    "int": "Nullable(Int64)",
    "double": "Nullable(Float64)",
    "bool": "Nullable(Bool)",
}
#: the events table's columns: the project, every field of an event (JSON objects as text),
#: when it was received and which append batch stored it (the table, ordered for the
#: segmentation queries and partitioned by month, is made by :mod:`.cluster`)
EVENT_COLUMNS: dict[str, str] = {
    "project_id": "Int64",
    **{f.name: _FIELD_KINDS[f.kind] for f in SPEC},
    "received_at": "DateTime64(6)",
    "batch_id": "Int64",
}
EVENTS_COLUMNS = ", ".join(f"{quote_name(n)} {t}" for n, t in EVENT_COLUMNS.items())

#: scalar DuckDB types and their ClickHouse columns (sqlglot's defaults lose precision here)
_SCALARS = {
    "VARCHAR": "String",
    "JSON": "String",
    "BLOB": "String",
    "BOOLEAN": "Bool",
    "TINYINT": "Int8",
    "SMALLINT": "Int16",
    "INTEGER": "Int32",
    "BIGINT": "Int64",
    "HUGEINT": "Int128",
    "UTINYINT": "UInt8",
    "USMALLINT": "UInt16",
    "UINTEGER": "UInt32",
    "UBIGINT": "UInt64",
    "FLOAT": "Float32",
    "DOUBLE": "Float64",
    "DATE": "Date32",
    "TIMESTAMP": "DateTime64(6)",
    "TIMESTAMP_S": "DateTime64(0)",
    "TIMESTAMP_MS": "DateTime64(3)",
    "TIMESTAMP_NS": "DateTime64(9)",
    "TIMESTAMP WITH TIME ZONE": "DateTime64(6, 'UTC')",
    "UUID": "UUID",
}
_DECIMAL = re.compile(r"DECIMAL\((\d+),\s*(\d+)\)")
#: the scalar types as sqlglot renders them inside a nested one (TEXT for VARCHAR, ...)
_ALIASES = {exp.DataType.build(t, dialect="duckdb").sql("duckdb"): t for t in _SCALARS}
_NESTED = (exp.DataType.Type.ARRAY, exp.DataType.Type.STRUCT, exp.DataType.Type.MAP)


def column_type(duckdb_type: str, name: str) -> str:
    """The ClickHouse column of a property of ``duckdb_type`` (nullable where it can be)."""
    if scalar := _scalar(duckdb_type):
        return f"Nullable({scalar})"
    if nested := _nested(duckdb_type):
        return nested
    raise ConfigurationError(
        f"property {name!r} has type {duckdb_type}, which the ClickHouse store does not keep: "
        "cast it in the mapping (for example to VARCHAR)"
    )


def _scalar(duckdb_type: str) -> str | None:
    name = _ALIASES.get(duckdb_type, duckdb_type)
    if name in _SCALARS:
        return _SCALARS[name]
    if match := _DECIMAL.fullmatch(name):
        return f"Decimal({match[1]}, {match[2]})"
    return None


def _nested(duckdb_type: str) -> str | None:
    """A list, struct or map with each scalar inside as :data:`_SCALARS` keeps it (sqlglot
    alone would turn a timestamp into whole seconds); None if any has no column."""
    try:
        tree = exp.DataType.build(duckdb_type, dialect="duckdb")
    except Exception:
        return None
    if not tree.is_type(*_NESTED):
        return None
    for leaf in list(tree.find_all(exp.DataType)):
        if leaf.is_type(*_NESTED):
            continue
        scalar = _scalar(leaf.sql("duckdb"))
        if scalar is None:
            return None
        column = exp.DataType.build(scalar, dialect="clickhouse")
        column.set("nullable", None)  # Nullable where ClickHouse allows it, as for the rest
        leaf.replace(column)
    return tree.sql("clickhouse")


def literal(text: str) -> str:
    """A ClickHouse string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
