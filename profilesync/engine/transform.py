"""Map, validate and compact a batch of warehouse rows, vectorised in DuckDB over Arrow.

Input: the rows a source read (table columns + ``_op``/``_ord``, see warehouses/protocol.py).
Output: one net change per ``user_id`` (last by ``_ord``; insert-then-delete nets to a
delete, which the store ignores for users it does not hold) and the rejected rows with a
reason a person can read. No Python runs per row.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from profilesync.errors import ConfigurationError, ProfilesyncError
from profilesync.mapping import quote
from profilesync.model import Mapping
from profilesync.sandbox import lock_down
from profilesync.store.protocol import DELETED
from profilesync.warehouses.protocol import OP, ORD, UPSERT

MIN_USER_ID_LENGTH = 5
#: rejected rows kept per run (all are counted)
REJECTED_SAMPLE = 1000
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


@dataclass
class Transformed:
    """Net changes (``user_id``, ``_deleted``, properties...) and rejected rows."""

    net: pa.Table
    rejected: pa.Table  # reason, row (JSON text)
    read: int
    rejected_count: int


def transform(reader: pa.RecordBatchReader, mapping: Mapping) -> Transformed:
    """Run the mapping on an in-memory DuckDB that reaches no file.

    The mapping's expressions and filter are a user's SQL. Spilling to the temp directory
    keeps working with external access off (DuckDB writes its own temp files).
    """
    con = duckdb.connect()
    lock_down(con)
    try:
        return _transform(con, reader, mapping)
    finally:
        con.close()


def _transform(
    con: duckdb.DuckDBPyConnection, reader: pa.RecordBatchReader, mapping: Mapping
) -> Transformed:
    names = ", ".join(quote(n) for n in mapping.property_names)
    with _incoming(con, reader):
        _check(con, mapping)  # one pass over the stream: map, validate, keep
    # Most batches hold one row per user (a keyed snapshot, or one change each): a hash
    # count is far cheaper than the window that picks each user's last change.
    repeated = _scalar(
        con, "SELECT count(user_id) - count(DISTINCT user_id) FROM checked WHERE _reason IS NULL"
    )
    if repeated:
        _reject_ambiguous(con)
    read = _scalar(con, "SELECT count(*) FROM checked")
    rejected_count = _scalar(
        con, f"SELECT count(*) FROM checked WHERE _reason IS NOT NULL AND NOT {DELETED}"
    )
    fields = "".join(f", {quote(n)} := {quote(n)}" for n in mapping.property_names)
    rejected = con.execute(f"""
        SELECT _reason AS reason, to_json(struct_pack(user_id := _raw_user_id{fields})) AS row
        FROM checked WHERE _reason IS NOT NULL AND NOT {DELETED}
        ORDER BY {ORD} LIMIT {REJECTED_SAMPLE}""").to_arrow_table()
    columns = f"user_id, {DELETED}{', ' + names if names else ''}"
    if not repeated:
        net = con.execute(f"SELECT {columns} FROM checked WHERE _reason IS NULL").to_arrow_table()
    else:  # each user's last change; within one commit an upsert before a filtered-out row
        net = con.execute(f"""
            SELECT {columns} FROM checked WHERE _reason IS NULL
              AND user_id NOT IN (SELECT user_id FROM _ambiguous)
            QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY {ORD} DESC, {DELETED}) = 1
            UNION ALL BY NAME SELECT user_id, true AS {DELETED} FROM _ambiguous""").to_arrow_table()
    return Transformed(net, rejected, read, rejected_count)


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
        UPDATE checked SET _reason = 'user_id ' || to_json(checked.user_id) || ' has ' || a.n
            || ' rows at once (duplicate keys in the table or in one commit): a profile takes one row per user'
        FROM _ambiguous a WHERE checked.user_id = a.user_id AND checked.{ORD} = a.{ORD}
            AND NOT checked.{DELETED} AND checked._reason IS NULL""")


def _check(con: duckdb.DuckDBPyConnection, mapping: Mapping) -> None:
    """Materialise ``checked``: the mapped row, its ``user_id``, whether it deletes, why rejected."""
    uid = _user_id_sql(con, mapping)
    props = "".join(f"{p.expression} AS {quote(p.name)}, " for p in mapping.properties)
    keep = f"{OP} = '{UPSERT}'" + (f" AND ({mapping.where}) IS TRUE" if mapping.where else "")
    reason = f"""CASE
        WHEN _raw_user_id IS NULL THEN 'user_id is null'
        WHEN user_id IS NULL THEN 'user_id has type ' || typeof(_raw_user_id) || ' (value ' || CAST(_raw_user_id AS VARCHAR) || '): expected a string or an integer'
        WHEN length(user_id) < {MIN_USER_ID_LENGTH} THEN 'user_id ' || to_json(user_id) || ' is shorter than {MIN_USER_ID_LENGTH} characters'
        END"""
    _run(
        con,
        f"""
        CREATE TABLE checked AS SELECT *, {reason} AS _reason FROM (
            SELECT {uid} AS user_id, {mapping.user_id} AS _raw_user_id, {props}
                   CASE WHEN {keep} THEN false ELSE true END AS {DELETED}, {ORD}
            FROM raw)""",
        mapping,
    )


@contextmanager
def _incoming(con: duckdb.DuckDBPyConnection, reader: pa.RecordBatchReader) -> Iterator[None]:
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
        yield
    except ProfilesyncError:
        if raised:
            raise raised[0] from None
        raise
    finally:
        con.execute("DROP VIEW raw")
        con.unregister("incoming")


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
        raise ConfigurationError(
            f"the mapping of table {mapping.table} could not be evaluated: {exc}".splitlines()[0]
            + " — check the column names and expressions (profilesync source test NAME shows them)"
        ) from exc


def _scalar(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    return int(row[0]) if row else 0


__all__ = ["DELETED", "MIN_USER_ID_LENGTH", "Transformed", "transform"]
