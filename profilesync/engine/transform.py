"""Map, validate and compact warehouse rows, vectorised in DuckDB over Arrow, in bounded memory.

Input: the rows a source read (table columns + ``_op``/``_ord``, see warehouses/protocol.py).
The mapping (a user's SQL) runs in a scratch DuckDB that reaches no file and spills to
disk past the sync's memory budget (:mod:`profilesync.scratch`). Output, as a stream the
store reads once (:class:`profilesync.store.protocol.NetChanges`):

- a **snapshot** (no ``_op``) streams through as mapped: each batch's rejected rows are
  counted and sampled on the way, and nothing is held; the store finds users on several
  rows while it stages the stream;
- a **change window** is staged in the scratch engine and compacted there: one net change
  per ``user_id`` (last by ``_ord``; insert-then-delete nets to a delete, which the store
  ignores for users it does not hold), then streamed out.

Every rejected row has a reason a person can read. No Python runs per row.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from profilesync.errors import ConfigurationError, ProfilesyncError
from profilesync.faults import fault
from profilesync.mapping import quote
from profilesync.model import Mapping
from profilesync.scratch import scratch
from profilesync.store.protocol import DELETED, REJECTED_SAMPLE, ambiguous_reason
from profilesync.warehouses.protocol import OP, ORD, UPSERT

MIN_USER_ID_LENGTH = 5
#: rows per batch handed to the store
BATCH_ROWS = 122_880  # DuckDB's row group size: whole vectors, few batches
_INTEGER_TYPES = {
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "UHUGEINT",
}
_REJECTED_SCHEMA = pa.schema([("reason", pa.string()), ("row", pa.string())])


@dataclass
class Stream:
    """:class:`profilesync.store.protocol.NetChanges` of one sync, filled as it is read."""

    compacted: bool
    reader: pa.RecordBatchReader | None = None
    read: int = 0
    rejected_count: int = 0
    sample: list[pa.Table] = field(default_factory=list)
    #: an error met while the store pulled the stream: raised as itself after the store
    #: gives up (DuckDB would otherwise wrap it into its own message)
    errors: list[BaseException] = field(default_factory=list)

    def rows(self) -> pa.RecordBatchReader:
        if self.reader is None:
            raise RuntimeError("the stream of a sync is read once")
        reader, self.reader = self.reader, None
        return reader

    def rejected(self) -> pa.Table:
        if not self.sample:
            return _REJECTED_SCHEMA.empty_table()
        return pa.concat_tables(self.sample).slice(0, REJECTED_SAMPLE)


@dataclass
class Transformed:
    """A window transformed at once (previews, tests): net changes and rejected rows."""

    net: pa.Table
    rejected: pa.Table  # reason, row (JSON text)
    read: int
    rejected_count: int


@contextmanager
def transformed(reader: pa.RecordBatchReader, mapping: Mapping) -> Iterator[Stream]:
    """The transformed stream of ``reader``, valid inside the ``with`` block.

    An error raised while the store reads the stream (the warehouse's own, or the
    mapping's) leaves the block as that error.
    """
    with scratch() as con, _incoming(con, reader) as raised:
        stream = Stream(compacted=OP in reader.schema.names)
        try:
            if stream.compacted:
                _compact(con, mapping, stream)
            else:
                stream.reader = _streamed(con, mapping, stream)
            yield stream
        except Exception:
            if first := next(iter(stream.errors or raised), None):
                raise first from None
            raise


def transform(reader: pa.RecordBatchReader, mapping: Mapping) -> Transformed:
    """Transform ``reader`` at once: one net change per user, in memory (small windows)."""
    with scratch() as con, _incoming(con, reader):
        stream = Stream(compacted=True)
        _compact(con, mapping, stream)
        net = stream.rows().read_all()
        return Transformed(net, stream.rejected(), stream.read, stream.rejected_count)


def _streamed(
    con: duckdb.DuckDBPyConnection, mapping: Mapping, stream: Stream
) -> pa.RecordBatchReader:
    """A snapshot, mapped batch by batch; rejected rows are counted and sampled on the way."""
    names = [DELETED, *mapping.property_names]
    mapped = _run(
        con, f"SELECT *, {_row_json(mapping)} AS _row FROM ({_checked_sql(con, mapping)})", mapping
    )
    source = mapped.to_arrow_reader(BATCH_ROWS)
    schema = pa.schema([source.schema.field("user_id"), *(source.schema.field(n) for n in names)])

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            for batch in source:
                yield _tally(batch, schema, stream)
                fault("spill")
        except duckdb.Error as exc:
            stream.errors.append(_mapping_error(exc, mapping))
            raise
        except Exception as exc:
            stream.errors.append(exc)
            raise

    return pa.RecordBatchReader.from_batches(schema, batches())


def _tally(batch: pa.RecordBatch, schema: pa.Schema, stream: Stream) -> pa.RecordBatch:
    """Count and sample the batch's rejected rows; the valid ones go on."""
    stream.read += batch.num_rows
    bad = pc.is_valid(batch.column("_reason"))
    if pc.any(bad).as_py():
        rejected = batch.filter(pc.and_(bad, pc.invert(batch.column(DELETED))))
        stream.rejected_count += rejected.num_rows
        kept = sum(t.num_rows for t in stream.sample)
        if kept < REJECTED_SAMPLE:
            part = rejected.slice(0, REJECTED_SAMPLE - kept).select(["_reason", "_row"])
            stream.sample.append(pa.Table.from_batches([part]).rename_columns(["reason", "row"]))
        batch = batch.filter(pc.invert(bad))
    return batch.select(schema.names)


def _compact(con: duckdb.DuckDBPyConnection, mapping: Mapping, stream: Stream) -> None:
    """Stage the window, then stream each user's net change out of the scratch engine."""
    names = ", ".join(quote(n) for n in mapping.property_names)
    _run(con, f"CREATE TABLE checked AS {_checked_sql(con, mapping)}", mapping)
    fault("spill")
    # Most windows hold one row per user (one change each): a hash count is far cheaper
    # than the window that picks each user's last change.
    repeated = _scalar(
        con, "SELECT count(user_id) - count(DISTINCT user_id) FROM checked WHERE _reason IS NULL"
    )
    if repeated:
        _reject_ambiguous(con)
    stream.read = _scalar(con, "SELECT count(*) FROM checked")
    stream.rejected_count = _scalar(
        con, f"SELECT count(*) FROM checked WHERE _reason IS NOT NULL AND NOT {DELETED}"
    )
    stream.sample.append(
        con.execute(f"""
        SELECT _reason AS reason, {_row_json(mapping)} AS row
        FROM checked WHERE _reason IS NOT NULL AND NOT {DELETED}
        ORDER BY {ORD} LIMIT {REJECTED_SAMPLE}""").to_arrow_table()
    )
    columns = f"user_id, {DELETED}{', ' + names if names else ''}"
    if not repeated:
        net = f"SELECT {columns} FROM checked WHERE _reason IS NULL"
    else:  # each user's last change; within one commit an upsert before a filtered-out row
        net = f"""
            SELECT {columns} FROM checked WHERE _reason IS NULL
              AND user_id NOT IN (SELECT user_id FROM _ambiguous)
            QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY {ORD} DESC, {DELETED}) = 1
            UNION ALL BY NAME SELECT user_id, true AS {DELETED} FROM _ambiguous"""
    stream.reader = con.execute(net).to_arrow_reader(BATCH_ROWS)


def _reject_ambiguous(con: duckdb.DuckDBPyConnection) -> None:
    """A user whose latest state is several rows at once (duplicate keys in the table, or
    in one commit) has no single profile: reject those rows with the reason and remove the
    user's properties, as a snapshot of the same table would. ``_ambiguous`` lists them."""
    con.execute(f"""
        CREATE TABLE _ambiguous AS SELECT user_id, {ORD}, n FROM (
            SELECT user_id, {ORD}, count_if(NOT {DELETED}) AS n FROM checked
            WHERE _reason IS NULL GROUP BY user_id, {ORD}
            QUALIFY {ORD} = max({ORD}) OVER (PARTITION BY user_id)) WHERE n > 1""")
    con.execute(f"""
        UPDATE checked SET _reason = {ambiguous_reason("checked.user_id", "a.n")}
        FROM _ambiguous a WHERE checked.user_id = a.user_id AND checked.{ORD} = a.{ORD}
            AND NOT checked.{DELETED} AND checked._reason IS NULL""")


def _checked_sql(con: duckdb.DuckDBPyConnection, mapping: Mapping) -> str:
    """The mapped row, its ``user_id``, whether it deletes, and why it is rejected."""
    uid = _user_id_sql(con, mapping)
    props = "".join(f"{p.expression} AS {quote(p.name)}, " for p in mapping.properties)
    keep = f"{OP} = '{UPSERT}'" + (f" AND ({mapping.where}) IS TRUE" if mapping.where else "")
    reason = f"""CASE
        WHEN _raw_user_id IS NULL THEN 'user_id is null'
        WHEN user_id IS NULL THEN 'user_id has type ' || typeof(_raw_user_id) || ' (value ' || CAST(_raw_user_id AS VARCHAR) || '): expected a string or an integer'
        WHEN length(user_id) < {MIN_USER_ID_LENGTH} THEN 'user_id ' || to_json(user_id) || ' is shorter than {MIN_USER_ID_LENGTH} characters'
        END"""
    return f"""SELECT *, {reason} AS _reason FROM (
            SELECT {uid} AS user_id, {mapping.user_id} AS _raw_user_id, {props}
                   CASE WHEN {keep} THEN false ELSE true END AS {DELETED}, {ORD}
            FROM raw)"""


def _row_json(mapping: Mapping) -> str:
    """A rejected row as the user mapped it, JSON text (only rows with a reason pay for it)."""
    fields = "".join(f", {quote(n)} := {quote(n)}" for n in mapping.property_names)
    return f"CASE WHEN _reason IS NOT NULL THEN to_json(struct_pack(user_id := _raw_user_id{fields}))::VARCHAR END"


@contextmanager
def _incoming(
    con: duckdb.DuckDBPyConnection, reader: pa.RecordBatchReader
) -> Iterator[list[Exception]]:
    """Expose the stream as view ``raw``; an error a source raises mid-read surfaces as itself.

    DuckDB wraps exceptions raised inside an Arrow stream into its own error text, which
    would turn "history expired, run --resync" into an opaque failure.
    """
    raised: list[Exception] = []

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            yield from reader
        except Exception as exc:  # the source's own error, not "the mapping failed"
            raised.append(exc)
            raise

    con.register("incoming", pa.RecordBatchReader.from_batches(reader.schema, batches()))
    extra = "" if OP in reader.schema.names else f", '{UPSERT}' AS {OP}, 0::BIGINT AS {ORD}"
    con.execute(f"CREATE VIEW raw AS SELECT *{extra} FROM incoming")
    try:
        yield raised
    except ProfilesyncError:
        if raised:
            raise raised[0] from None
        raise


def _user_id_sql(con: duckdb.DuckDBPyConnection, mapping: Mapping) -> str:
    """Integers become their decimal string; strings stay; other types map to NULL (rejected)."""
    described = _run(con, f"DESCRIBE SELECT {mapping.user_id} AS u FROM raw", mapping).fetchall()
    dtype = str(described[0][1]).upper()
    if dtype in _INTEGER_TYPES or dtype == "VARCHAR":
        return f"CAST({mapping.user_id} AS VARCHAR)"
    if re.fullmatch(r"DECIMAL\(\d+,\s*0\)", dtype):  # a whole number: NUMBER(38,0), numeric(20,0)
        return f"CAST(CAST({mapping.user_id} AS HUGEINT) AS VARCHAR)"
    return "CAST(NULL AS VARCHAR)"


def _run(con: duckdb.DuckDBPyConnection, sql: str, mapping: Mapping) -> duckdb.DuckDBPyConnection:
    try:
        return con.execute(sql)
    except duckdb.Error as exc:
        raise _mapping_error(exc, mapping) from exc


def _mapping_error(exc: duckdb.Error, mapping: Mapping) -> ConfigurationError:
    return ConfigurationError(
        f"the mapping of table {mapping.table} could not be evaluated: {exc}".splitlines()[0]
        + " — check the column names and expressions (profilesync source test NAME shows them)"
    )


def _scalar(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    return int(row[0]) if row else 0


__all__ = [
    "BATCH_ROWS",
    "DELETED",
    "MIN_USER_ID_LENGTH",
    "REJECTED_SAMPLE",
    "Stream",
    "Transformed",
    "transform",
    "transformed",
]
