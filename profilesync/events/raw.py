"""Request bodies, JSON Lines and table columns as *raw* relations: ``idx`` numbers the
event, line or row; ``problem`` says why a row is not an event at all; ``screen`` is false
when the text it came from cannot hold what the costlier checks look for (NaN, Infinity,
huge numbers, control characters; see :data:`SCREEN`); and each field ``f`` comes as two
columns, ``"f"``, its value as minified JSON text (its first character tells its JSON type
without parsing it again), and ``"f:s"``, its value as text. :mod:`.validate` checks and
types them.
"""

from __future__ import annotations

import re
from collections.abc import Collection

import pyarrow as pa

from profilesync.events.fields import FIELDS, REVENUE_PROPERTIES, SPEC, Field
from profilesync.mapping import quote

#: what a JSON text holding NaN, Infinity, a number past a double or an (escaped) control
#: character must contain: one scan of a whole request spares the per-field checks
SCREEN = r"(?i)nan|inf|[0-9]{300}|[e][+]?0*[1-9][0-9]{2}|\\[bfnrt]|\\u00[01]|\\u007f|\x7f"


def _struct(sql_type: str, fields: Collection[str] | None = None) -> str:
    return "{" + ", ".join(f'"{f.key}": "{sql_type}"' for f in among(fields)) + "}"


def among(fields: Collection[str] | None) -> list[Field]:
    return [f for f in SPEC if fields is None or f.name in fields]


def _fields_of(json_struct: str, text_struct: str, fields: Collection[str] | None = None) -> str:
    """Each field's JSON text and text from two structs (``fields`` only, default all)."""
    return ", ".join(
        f"{json_struct}.{quote(f.key)} AS {quote(f.name)}, "
        f"{text_struct}.{quote(f.key)} AS {quote(f.name + ':s')}"
        for f in among(fields)
    )


#: fields every checked batch has columns for (what storing reads), sent or not
ALWAYS = frozenset(
    {
        "event_type",
        "user_id",
        "device_id",
        "time",
        "event_properties",
        "user_properties",
        "insert_id",
        "skip_user_properties_sync",
    }
)


def present_fields(body: bytes) -> frozenset[str] | None:
    """The fields whose key appears in ``body`` (a superset of those sent, and
    :data:`ALWAYS`), so a batch is read and checked for those only; None (every field)
    when a key may be escaped."""
    if b"\\u" in body:
        return None
    found = {key.decode()[1:-1] for key in _KEYS.findall(body)}
    sent = {f.name for f in SPEC if f.key in found}
    if found & _HELPER_KEYS:
        sent.update(REVENUE_PROPERTIES)  # the revenue helpers' event properties
    return frozenset(sent | ALWAYS)


_HELPER_KEYS = {"$" + name for name in REVENUE_PROPERTIES}
#: the keys of the fields not in ALWAYS, and of the revenue helpers, as JSON strings
_KEYS = re.compile(
    b"|".join(
        re.escape(b'"' + key.encode() + b'"')
        for key in sorted({f.key for f in SPEC if f.name not in ALWAYS} | _HELPER_KEYS)
    )
)


def complete(typed: pa.Table) -> pa.Table:
    """``typed`` with a column of NULLs for every field it lacks (not sent), in
    :data:`FIELDS` order after ``idx``."""
    n = typed.num_rows
    columns = [typed.column("idx")] if "idx" in typed.column_names else []
    names = ["idx"] if columns else []
    for f in SPEC:
        names.append(f.name)
        if f.name in typed.column_names:
            columns.append(typed.column(f.name))
        else:
            columns.append(pa.nulls(n, _ARROW[f.sql_type]))
    rest = [c for c in typed.column_names if c not in names]
    return pa.table(columns + [typed.column(c) for c in rest], names=names + rest)


_ARROW = {
    "VARCHAR": pa.string(),
    "JSON": pa.string(),
    "BIGINT": pa.int64(),
    "DOUBLE": pa.float64(),
    "BOOLEAN": pa.bool_(),
    "TIMESTAMP": pa.timestamp("us"),
}


def raw_from_batch(body_param: str = "?", fields: Collection[str] | None = None) -> str:
    """The raw relation of an HTTP V2 body's ``events`` array (each JSON document parsed
    once); only ``fields`` are read (default: all), the others are NULL (not sent)."""
    lists = (
        f"SELECT json_type(b, '$.events[*]') AS ty, "
        f"json_transform(b->'events', '[{_struct('JSON', fields)}]') AS j, "
        f"json_transform(b->'events', '[{_struct('VARCHAR', fields)}]') AS s, "
        f"regexp_matches(b::VARCHAR, '{SCREEN}') AS screen FROM (SELECT {body_param}::JSON AS b)"
    )
    rows = (
        "SELECT unnest(range(len(ty))) AS idx, unnest(ty) AS ty, unnest(j) AS j, "
        f"unnest(s) AS s, screen FROM ({lists})"
    )
    return (
        "SELECT idx, CASE WHEN ty <> 'OBJECT' THEN 'the event must be a JSON object' END AS problem, "
        "screen, "
        f"{_fields_of('j', 's', fields)} FROM ({rows})"
    )


def raw_from_lines(source: str) -> str:
    """The raw relation of JSON Lines (``source`` has ``idx`` and ``line``)."""
    typed = (
        "SELECT idx, line, CASE WHEN json_valid(line) THEN json_type(line) "
        f"ELSE 'INVALID' END AS ty, regexp_matches(line, '{SCREEN}') AS screen FROM ({source})"
    )
    parsed = (
        "SELECT idx, CASE ty WHEN 'OBJECT' THEN NULL WHEN 'INVALID' THEN 'the line is not valid JSON' "
        "ELSE 'the line is not a JSON object' END AS problem, screen, "
        f"CASE WHEN ty = 'OBJECT' THEN json_transform(line, '{_struct('JSON')}') END AS j, "
        f"CASE WHEN ty = 'OBJECT' THEN json_transform(line, '{_struct('VARCHAR')}') END AS s "
        f"FROM ({typed})"
    )
    return f"SELECT idx, problem, screen, {_fields_of('j', 's')} FROM ({parsed})"


def raw_from_columns(source: str, schema: pa.Schema, idx: str) -> str:
    """The raw relation of a table's columns (CSV: all text; Parquet: typed)."""
    parts = []
    for f in SPEC:
        col, text = quote(f.name), quote(f.name + ":s")
        found = next((n for n in (f.key, f.name) if n in schema.names), None)
        if found is None:
            parts.append(f"NULL::VARCHAR AS {col}, NULL::VARCHAR AS {text}")
            continue
        arrow_type = schema.field(found).type
        given = quote(found)
        if f.kind == "object" and (
            pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)
        ):  # JSON written as text
            value = f"CASE WHEN json_valid({given}) THEN json({given}) ELSE to_json({given}) END"
        else:
            value = f"to_json({given})"
        parts.append(f"CAST({value} AS VARCHAR) AS {col}, CAST({given} AS VARCHAR) AS {text}")
    return (
        f"SELECT {idx} AS idx, NULL::VARCHAR AS problem, true AS screen, "
        f"{', '.join(parts)} FROM ({source})"
    )


def ignored_columns(schema: pa.Schema) -> list[str]:
    known = {f.key for f in SPEC} | set(FIELDS)
    return [n for n in schema.names if n not in known]
