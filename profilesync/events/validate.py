"""Events checked and typed in one SQL statement, whatever they came from.

Every input is first turned into a *raw* relation: ``idx`` numbers the event, line or
row; ``problem`` says why a row is not an event at all; and each field comes as its JSON
text and its text value. :func:`validate_sql` then yields, for every row, the list of
``reasons`` it is invalid (empty when valid) and the typed fields, vectorised by DuckDB.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from profilesync.events.store import STANDARD_FIELDS
from profilesync.mapping import quote

MIN_ID_LENGTH = 5
#: every field of an event, in the order of the typed relation
FIELDS: tuple[str, ...] = (
    "event_type",
    "user_id",
    "device_id",
    "time",
    "event_properties",
    "user_properties",
    "insert_id",
    *STANDARD_FIELDS,
)
_MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


# -- raw relations ----------------------------------------------------------------------
#
# A raw relation has ``idx``, ``problem`` (why the row is no event, or NULL) and, per
# field ``f``, two columns: ``"f"``, the value as minified JSON text (its first character
# tells its JSON type without parsing it again), and ``"f:s"``, the value as text.


def _struct(sql_type: str) -> str:
    return "{" + ", ".join(f'"{name}": "{sql_type}"' for name in FIELDS) + "}"


def _fields_of(json_struct: str, text_struct: str) -> str:
    return ", ".join(
        f"{json_struct}.{quote(name)} AS {quote(name)}, {text_struct}.{quote(name)} AS {quote(name + ':s')}"
        for name in FIELDS
    )


def raw_from_batch(body_param: str = "?") -> str:
    """The raw relation of an HTTP V2 body's ``events`` array (each JSON document parsed once)."""
    lists = (
        f"SELECT json_type(b, '$.events[*]') AS ty, json_transform(b->'events', '[{_struct('JSON')}]') AS j, "
        f"json_transform(b->'events', '[{_struct('VARCHAR')}]') AS s FROM (SELECT {body_param}::JSON AS b)"
    )
    rows = f"SELECT unnest(range(len(ty))) AS idx, unnest(ty) AS ty, unnest(j) AS j, unnest(s) AS s FROM ({lists})"
    return (
        "SELECT idx, CASE WHEN ty <> 'OBJECT' THEN 'the event must be a JSON object' END AS problem, "
        f"{_fields_of('j', 's')} FROM ({rows})"
    )


def raw_from_lines(source: str) -> str:
    """The raw relation of JSON Lines (``source`` has ``idx`` and ``line``)."""
    typed = (
        "SELECT idx, line, CASE WHEN json_valid(line) THEN json_type(line) "
        f"ELSE 'INVALID' END AS ty FROM ({source})"
    )
    parsed = (
        "SELECT idx, CASE ty WHEN 'OBJECT' THEN NULL WHEN 'INVALID' THEN 'the line is not valid JSON' "
        "ELSE 'the line is not a JSON object' END AS problem, "
        f"CASE WHEN ty = 'OBJECT' THEN json_transform(line, '{_struct('JSON')}') END AS j, "
        f"CASE WHEN ty = 'OBJECT' THEN json_transform(line, '{_struct('VARCHAR')}') END AS s "
        f"FROM ({typed})"
    )
    return f"SELECT idx, problem, {_fields_of('j', 's')} FROM ({parsed})"


def raw_from_columns(source: str, schema: pa.Schema, idx: str) -> str:
    """The raw relation of a table's columns (CSV: all text; Parquet: typed)."""
    parts = []
    for name in FIELDS:
        col, text = quote(name), quote(name + ":s")
        if name not in schema.names:
            parts.append(f"NULL::VARCHAR AS {col}, NULL::VARCHAR AS {text}")
            continue
        arrow_type = schema.field(name).type
        if name.endswith("_properties") and (
            pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)
        ):  # JSON written as text
            value = f"CASE WHEN json_valid({col}) THEN json({col}) ELSE to_json({col}) END"
        else:
            value = f"to_json({col})"
        parts.append(f"CAST({value} AS VARCHAR) AS {col}, CAST({col} AS VARCHAR) AS {text}")
    return f"SELECT {idx} AS idx, NULL::VARCHAR AS problem, {', '.join(parts)} FROM ({source})"


def ignored_columns(schema: pa.Schema) -> list[str]:
    return [n for n in schema.names if n not in FIELDS]


# -- validation -------------------------------------------------------------------------


def _str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _kind(c: str) -> str:
    """The JSON type of a minified JSON text: null, string, integer, number, boolean, object, array."""
    return (
        f"CASE WHEN {c} IS NULL THEN 'null' ELSE CASE left({c}, 1) WHEN '\"' THEN 'string' "
        f"WHEN '{{' THEN 'object' WHEN '[' THEN 'array' WHEN 't' THEN 'boolean' "
        f"WHEN 'f' THEN 'boolean' WHEN 'n' THEN 'null' ELSE CASE WHEN "
        f"regexp_full_match({c}, '-?[0-9]+') THEN 'integer' ELSE 'number' END END END"
    )


def _k(name: str) -> str:
    return quote(name + ":k")


def _s(name: str) -> str:
    return quote(name + ":s")


def _v(name: str) -> str:
    return quote(name + ":v")


def _text(name: str) -> str:
    """A string or an integer as text (ids are strings; integers become their digits)."""
    return f"CASE WHEN {_k(name)} IN ('string', 'integer') THEN {_s(name)} END"


def _ms(x: str) -> str:
    return f"CASE WHEN {x} BETWEEN 0 AND {_MAX_MS} THEN epoch_ms({x}) END"


def _time() -> str:
    """Milliseconds since the epoch (number or digits), or an ISO 8601 timestamp (UTC)."""
    k, s = _k("time"), _s("time")
    return (
        f"CASE WHEN {k} = 'integer' THEN {_ms(f'TRY_CAST({s} AS BIGINT)')} "
        f"WHEN {k} = 'number' THEN {_ms(f'TRY_CAST(floor(TRY_CAST({s} AS DOUBLE)) AS BIGINT)')} "
        f"WHEN {k} = 'string' AND regexp_full_match({s}, '[0-9]{{1,15}}') "
        f"THEN {_ms(f'CAST({s} AS BIGINT)')} "
        f"WHEN {k} = 'string' THEN TRY_CAST(TRY_CAST({s} AS TIMESTAMPTZ) AS TIMESTAMP) END"
    )


def _scalar(name: str, sql_type: str) -> str:
    if sql_type == "VARCHAR":
        return f"CASE WHEN {_k(name)} IN ('string', 'integer', 'number', 'boolean') THEN {_s(name)} END"
    return f"CASE WHEN {_k(name)} IN ('string', 'integer', 'number') THEN TRY_CAST({_s(name)} AS {sql_type}) END"


def _reason(field: str, kind: str, message: str) -> str:
    return f"{{'field': {_str(field)}, 'kind': {_str(kind)}, 'message': {_str(message)}}}"


def _when(condition: str, field: str, kind: str, message: str) -> str:
    return f"WHEN {condition} THEN {_reason(field, kind, message)}"


def _present(name: str) -> str:
    return f"{_k(name)} <> 'null'"


def _checks(min_id_length: int) -> list[str]:
    """One ``CASE`` per field yielding a reason struct, or NULL when the field is fine."""
    et = "event_type"
    checks = [
        _when(
            f"{_k(et)} = 'null' OR ({_k(et)} = 'string' AND {_s(et)} = '')",
            et,
            "missing",
            "event_type is missing",
        )
        + " "
        + _when(f"{_k(et)} <> 'string'", et, "invalid", "event_type must be a string"),
        _when(
            f"NOT {_present('user_id')} AND NOT {_present('device_id')}",
            "user_id",
            "missing",
            "an event needs a user_id or a device_id",
        ),
    ]
    for name in ("user_id", "device_id"):
        checks.append(
            _when(
                f"{_present(name)} AND {_v(name)} IS NULL",
                name,
                "invalid",
                f"{name} must be a string",
            )
            + " "
            + _when(
                f"length({_v(name)}) < {min_id_length}",
                name,
                "id_length",
                f"{name} is shorter than {min_id_length} characters",
            )
        )
    checks.append(
        _when(
            f"{_present('time')} AND {_v('time')} IS NULL",
            "time",
            "invalid",
            "time must be milliseconds since the epoch (or an ISO 8601 timestamp)",
        )
    )
    for name in ("event_properties", "user_properties"):
        checks.append(
            _when(
                f"{_k(name)} NOT IN ('null', 'object')",
                name,
                "invalid",
                f"{name} must be a JSON object",
            )
        )
    checks.append(
        _when(
            f"{_present('insert_id')} AND {_v('insert_id')} IS NULL",
            "insert_id",
            "invalid",
            "insert_id must be a string",
        )
    )
    for name, sql_type in STANDARD_FIELDS.items():
        checks.append(
            _when(
                f"{_present(name)} AND {_v(name)} IS NULL",
                name,
                "invalid",
                f"{name} must be {'a string' if sql_type == 'VARCHAR' else 'a number'}",
            )
        )
    return [f"CASE {check} END" for check in checks]


def validate_sql(raw: str, min_id_length: int = MIN_ID_LENGTH) -> str:
    """Typed events with their ``reasons`` (empty for a valid event) from a raw relation.

    Three layers, so each expression is computed once: the JSON kind of every field, then
    the typed values, then the reasons (a present field whose typed value is NULL is invalid).
    """
    kinds = ", ".join(f"{_kind(quote(name))} AS {_k(name)}" for name in FIELDS)
    typed = {
        "event_type": _s("event_type"),
        "user_id": _text("user_id"),
        "device_id": _text("device_id"),
        "time": _time(),
        **{
            n: f"CASE WHEN {_k(n)} = 'object' THEN {quote(n)}::JSON END"
            for n in ("event_properties", "user_properties")
        },
        "insert_id": _text("insert_id"),
        **{n: _scalar(n, t) for n, t in STANDARD_FIELDS.items()},
    }
    values = ", ".join(f"{expr} AS {_v(name)}" for name, expr in typed.items())
    checks = ", ".join(_checks(int(min_id_length)))
    problem = "{'field': 'event', 'kind': 'invalid', 'message': problem}"
    out = ", ".join(f"{_v(name)} AS {quote(name)}" for name in typed)
    return (
        f"SELECT idx, CASE WHEN problem IS NOT NULL THEN [{problem}] "
        f"ELSE list_filter([{checks}], x -> x IS NOT NULL) END AS reasons, {out} "
        f"FROM (SELECT *, {values} FROM (SELECT *, {kinds} FROM ({raw})))"
    )


def split(typed: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(valid events without ``reasons``, rejected rows with ``idx`` and ``reasons``)."""
    ok = pc.equal(pc.list_value_length(typed.column("reasons")), 0)
    valid = typed.filter(ok).drop_columns(["reasons"])
    rejected = typed.filter(pc.invert(ok)).select(["idx", "reasons"])
    return valid, rejected
