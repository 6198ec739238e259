"""Events in: HTTP V2 batches and file rows, validated and stored in DuckDB, vectorised.

Every input is first turned into one *raw* relation, one JSON value per field (``idx``
numbers the event or line, ``problem`` says why a row is not an event at all). One SQL
statement then validates every row and types its fields; nothing loops over events in
Python. Valid rows are appended through :class:`Writer`, which ignores events whose
``insert_id`` arrived within the last 7 days (see :mod:`profilesync.events.dedup`) and
commits before anyone is told the events are stored.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from profilesync.errors import ConfigurationError
from profilesync.events.dedup import RecentIds, index_for, key
from profilesync.events.store import STANDARD_FIELDS, ensure_schema, store_id
from profilesync.mapping import quote
from profilesync.store.duckdb import DuckDBStore

MAX_EVENTS = 2_000
MAX_BYTES = 1_048_576  # 1 MB
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


class InvalidBatchError(ConfigurationError):
    """A batch (or its events) is not in the HTTP V2 format; nothing of it was stored."""

    code = "invalid_batch"

    def __init__(self, message: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.body = {"code": 400, "error": message, **(body or {})}


class PayloadTooLargeError(ConfigurationError):
    code = "payload_too_large"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.body = {"code": 413, "error": message}


class InvalidApiKeyError(ConfigurationError):
    code = "invalid_api_key"

    def __init__(self) -> None:
        message = (
            "invalid api_key: use the key shown when the project was created "
            "(`profilesync events projects rotate-key NAME` makes a new one)"
        )
        super().__init__(message)
        self.body = {"code": 401, "error": message}


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
                f"{_present(name)} AND ({_text(name)}) IS NULL",
                name,
                "invalid",
                f"{name} must be a string",
            )
            + " "
            + _when(
                f"length({_text(name)}) < {min_id_length}",
                name,
                "id_length",
                f"{name} is shorter than {min_id_length} characters",
            )
        )
    checks.append(
        _when(
            f"{_present('time')} AND ({_time()}) IS NULL",
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
            f"{_present('insert_id')} AND ({_text('insert_id')}) IS NULL",
            "insert_id",
            "invalid",
            "insert_id must be a string",
        )
    )
    for name, sql_type in STANDARD_FIELDS.items():
        checks.append(
            _when(
                f"{_present(name)} AND ({_scalar(name, sql_type)}) IS NULL",
                name,
                "invalid",
                f"{name} must be {'a string' if sql_type == 'VARCHAR' else 'a number'}",
            )
        )
    return [f"CASE {check} END" for check in checks]


def validate_sql(raw: str, min_id_length: int = MIN_ID_LENGTH) -> str:
    """Typed events with their ``reasons`` (empty for a valid event) from a raw relation."""
    kinds = ", ".join(f"{_kind(quote(name))} AS {_k(name)}" for name in FIELDS)
    checks = ", ".join(_checks(int(min_id_length)))
    problem = "{'field': 'event', 'kind': 'invalid', 'message': problem}"
    typed = [
        f"{_s('event_type')} AS event_type",
        f"{_text('user_id')} AS user_id",
        f"{_text('device_id')} AS device_id",
        f"{_time()} AS time",
        *(
            f"CASE WHEN {_k(n)} = 'object' THEN {quote(n)}::JSON END AS {n}"
            for n in ("event_properties", "user_properties")
        ),
        f"{_text('insert_id')} AS insert_id",
        *(f"{_scalar(n, t)} AS {quote(n)}" for n, t in STANDARD_FIELDS.items()),
    ]
    return (
        f"SELECT idx, CASE WHEN problem IS NOT NULL THEN [{problem}] "
        f"ELSE list_filter([{checks}], x -> x IS NOT NULL) END AS reasons, "
        f"{', '.join(typed)} FROM (SELECT *, {kinds} FROM ({raw}))"
    )


def split(typed: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(valid events without ``reasons``, rejected rows with ``idx`` and ``reasons``)."""
    ok = pc.equal(pc.list_value_length(typed.column("reasons")), 0)
    valid = typed.filter(ok).drop_columns(["reasons"])
    rejected = typed.filter(pc.invert(ok)).select(["idx", "reasons"])
    return valid, rejected


# -- HTTP V2 batches --------------------------------------------------------------------

_local = threading.local()


def scratch() -> duckdb.DuckDBPyConnection:
    """This thread's in-memory DuckDB, for parsing outside the store's lock."""
    con: duckdb.DuckDBPyConnection | None = getattr(_local, "con", None)
    if con is None:
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET threads = 1")  # requests already run in parallel threads
        _local.con = con
    return con


@dataclass
class Batch:
    """A parsed HTTP V2 request: its API key and its typed, valid events."""

    api_key: str
    prepared: Prepared
    size_bytes: int
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))


def check_size(size: int) -> None:
    if size > MAX_BYTES:
        raise PayloadTooLargeError(
            f"the request is {size:,} bytes, over the limit of {MAX_BYTES:,} bytes (1 MB) "
            "per request: send smaller batches"
        )


def parse_batch(body: bytes) -> Batch:
    """Check and type a request body; raise the error a client must see (400 or 413)."""
    check_size(len(body))
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidBatchError("the request body is not UTF-8 encoded JSON") from exc
    con = scratch()
    valid = con.execute("SELECT json_valid(?)", [text]).fetchone()
    head = (
        con.execute(
            "SELECT json_type(b), b->>'api_key', json_type(b->'events'), "
            "json_array_length(b->'events'), b->'options'->'min_id_length' "
            "FROM (SELECT ?::JSON AS b)",
            [text],
        ).fetchone()
        if valid and valid[0]
        else None
    )
    kind, api_key, events_kind, count, min_len = head or (None,) * 5
    if kind != "OBJECT":
        raise InvalidBatchError(
            'the request body must be a JSON object {"api_key": ..., "events": [...]}'
        )
    if not api_key:
        raise InvalidBatchError(
            "the request has no api_key: add the project's API key", {"missing_field": "api_key"}
        )
    if events_kind != "ARRAY":
        raise InvalidBatchError(
            "the request has no events array: send events as a JSON array",
            {"missing_field": "events"},
        )
    if count > MAX_EVENTS:
        raise PayloadTooLargeError(
            f"the request has {count:,} events, over the limit of {MAX_EVENTS:,} events "
            "per request: split it into smaller batches"
        )
    typed = _typed_events(con, text, _min_id_length(min_len))
    events, rejected = split(typed)
    if rejected.num_rows:
        raise InvalidBatchError("some events are invalid; nothing was stored", _report(rejected))
    prepared = prepare(con, events.drop_columns(["idx"]))
    return Batch(api_key=str(api_key), prepared=prepared, size_bytes=len(body))


def _min_id_length(value: Any) -> int:
    if value is None:
        return MIN_ID_LENGTH
    try:
        return max(1, int(str(value)))
    except ValueError as exc:
        raise InvalidBatchError(
            "options.min_id_length must be a whole number",
            {"events_with_invalid_fields": {"options.min_id_length": []}},
        ) from exc


def _typed_events(con: duckdb.DuckDBPyConnection, text: str, min_id_length: int) -> pa.Table:
    return con.execute(validate_sql(raw_from_batch(), min_id_length), [text]).to_arrow_table()


_GROUPS = {
    "missing": "events_with_missing_fields",
    "invalid": "events_with_invalid_fields",
    "id_length": "events_with_invalid_id_lengths",
}


def _report(rejected: pa.Table) -> dict[str, Any]:
    """The 400 body: event indexes by field and kind, and one line per problem."""
    body: dict[str, Any] = {}
    problems = []
    for row in rejected.to_pylist():  # only the rejected events of one request
        for reason in row["reasons"]:
            group = body.setdefault(_GROUPS[reason["kind"]], {})
            group.setdefault(reason["field"], []).append(row["idx"])
            problems.append({"index": row["idx"], **reason})
    body["invalid_events"] = problems
    return body


# -- storing ----------------------------------------------------------------------------


@dataclass
class Appended:
    stored: int = 0
    duplicates: int = 0


@dataclass
class Prepared:
    """Valid events with what storing them needs, computed outside the store's lock."""

    events: pa.Table
    id_hashes: np.ndarray[Any, Any]  # DuckDB hash(insert_id)
    has_id: np.ndarray[Any, Any]
    catalog: pa.Table  # distinct (event_type, kind, name) the events bring


def prepare(con: duckdb.DuckDBPyConnection, events: pa.Table) -> Prepared:
    """Hash the insert_ids and list the event types and property names of ``events``."""
    con.register("_prepare", events)
    try:
        hashed = con.execute(
            "SELECT hash(insert_id) AS h, insert_id IS NOT NULL AS has_id FROM _prepare"
        ).to_arrow_table()
        catalog = con.execute(
            """SELECT DISTINCT event_type, kind, name FROM (
                SELECT event_type, 'type' AS kind, '' AS name FROM _prepare
                UNION ALL SELECT event_type, 'event', unnest(json_keys(event_properties))
                    FROM _prepare WHERE event_properties IS NOT NULL
                UNION ALL SELECT event_type, 'user', unnest(json_keys(user_properties))
                    FROM _prepare WHERE user_properties IS NOT NULL)"""
        ).to_arrow_table()
    finally:
        con.unregister("_prepare")
    return Prepared(
        events,
        hashed.column("h").to_numpy(),
        hashed.column("has_id").to_numpy(zero_copy_only=False).astype(bool),
        catalog,
    )


class Writer:
    """One transaction appending events of one project, ignoring recent ``insert_id`` s.

    Use as a context manager; the events are durable when the ``with`` block ends
    without an error (DuckDB commits to its write-ahead log). Callers serialize writers
    of one store (the server holds the store lock; the CLI owns the file).
    """

    def __init__(self, store: DuckDBStore, project_id: int, now: datetime | None = None) -> None:
        self.store = store
        self.con = ensure_schema(store)
        self.project_id = project_id
        self.now = (now or datetime.now(UTC)).astimezone(UTC)
        self.now_ms = int(self.now.timestamp() * 1000)
        self.index = index_for(store_id(store))
        self.pending = RecentIds()  # ids of this transaction, known to the index at commit
        self.batch_id = 0
        self.total = Appended()

    def __enter__(self) -> Writer:
        self.index.lock.acquire()
        try:
            self.con.execute("BEGIN TRANSACTION")
            self.index.catch_up(self.con, self.now)
            row = self.con.execute("SELECT nextval('event_batches')").fetchone()
            assert row is not None
            self.batch_id = int(row[0])
        except BaseException:
            self._abort()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if kind is not None:
            self._abort()
            return
        try:
            self.con.execute("COMMIT")
        except BaseException:
            self._abort()
            raise
        keys = np.concatenate([self.pending.big.keys, self.pending.small.keys])
        self.index.add(keys, np.full(len(keys), self.now_ms, np.int64), self.now)
        self.index.batch_id = max(self.index.batch_id, self.batch_id)
        self.index.lock.release()

    def _abort(self) -> None:
        try:
            self.con.execute("ROLLBACK")
        except duckdb.Error:
            pass  # no transaction was open
        finally:
            self.index.lock.release()

    def append(self, batch: Prepared) -> Appended:
        """Append prepared valid events (the columns :func:`validate_sql` yields)."""
        keep, keys = self._fresh(batch)
        incoming = batch.events.append_column("_keep", pa.array(keep, pa.bool_()))
        self.con.register("_incoming", incoming)
        self.con.register("_seen_names", batch.catalog)
        try:
            self._insert()
            self._catalog()
        finally:
            self.con.unregister("_incoming")
            self.con.unregister("_seen_names")
        self.pending.add(keys, np.full(len(keys), self.now_ms, np.int64), self.now)
        done = Appended(int(keep.sum()), int(len(keep) - keep.sum()))
        self.total.stored += done.stored
        self.total.duplicates += done.duplicates
        return done

    def _fresh(self, batch: Prepared) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """Which events to keep (the first of each new insert_id), and their index keys."""
        keys = key(batch.id_hashes, self.project_id)
        seen = self.index.seen(keys, self.now) | self.pending.seen(keys, self.now)
        first = np.zeros(len(keys), bool)
        ids_at = np.flatnonzero(batch.has_id)
        _, first_pos = np.unique(keys[ids_at], return_index=True)
        first[ids_at[first_pos]] = True
        keep = ~batch.has_id | (first & ~seen)
        return keep, keys[batch.has_id & keep]

    def _insert(self) -> None:
        received = self.now.replace(tzinfo=None)
        cols = ", ".join(quote(c) for c in FIELDS)
        values = ", ".join("coalesce(time, ?)" if c == "time" else quote(c) for c in FIELDS)
        self.con.execute(
            f"INSERT INTO events (project_id, {cols}, received_at, batch_id) "
            f"SELECT ?, {values}, ?, ? FROM _incoming WHERE _keep",
            [self.project_id, received, received, self.batch_id],
        )

    def _catalog(self) -> None:
        """Remember the event types and property names seen, for the query pickers."""
        self.con.execute(
            """INSERT INTO event_catalog SELECT ?, n.event_type, n.kind, n.name, ?
            FROM _seen_names n WHERE NOT EXISTS (SELECT 1 FROM event_catalog c
                WHERE c.project_id = ? AND c.event_type = n.event_type AND c.kind = n.kind
                AND c.name = n.name)""",
            [self.project_id, self.now.replace(tzinfo=None), self.project_id],
        )


def store_batch(store: DuckDBStore, project_id: int, batch: Batch) -> Appended:
    """Append one parsed HTTP V2 batch and commit it."""
    with Writer(store, project_id, batch.received_at) as writer:
        writer.append(batch.prepared)
    return writer.total


def ingest(store: DuckDBStore, body: bytes) -> dict[str, Any]:
    """Parse, authenticate and store one HTTP V2 request body; the 200 answer's body.

    Raises :class:`InvalidBatchError` (400), :class:`PayloadTooLargeError` (413) or
    :class:`InvalidApiKeyError` (401); nothing is stored then.
    """
    from profilesync.events.store import project_for_key

    batch = parse_batch(body)
    project = project_for_key(store, batch.api_key)
    if project is None:
        raise InvalidApiKeyError()
    done = store_batch(store, project.id, batch)
    return answer(batch, done)


def answer(batch: Batch, done: Appended) -> dict[str, Any]:
    return {
        "code": 200,
        "events_ingested": batch.prepared.events.num_rows,
        "payload_size_bytes": batch.size_bytes,
        "server_upload_time": int(batch.received_at.timestamp() * 1000),
        "events_deduplicated": done.duplicates,
    }
