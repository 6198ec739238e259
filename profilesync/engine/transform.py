"""Map, validate and compact warehouse rows, vectorised in DuckDB over Arrow, in bounded memory.

Input: the rows a source read (table columns + ``_op``/``_ord``, see warehouses/protocol.py).
The mapping (a user's SQL) runs in a scratch DuckDB that reaches no file but its own spill
directory and spills to disk past the sync's memory budget (:mod:`profilesync.scratch`).
Output (:class:`profilesync.store.protocol.NetChanges`): the rows to apply, written as a
Parquet file in that directory, which a store reads as files or as an Arrow stream:

- a **snapshot** (no ``_op``) is mapped and written as it streams in, nothing held; the
  store finds users on several rows when it reads the file;
- a **change window** is staged in the scratch engine and compacted there: one net change
  per ``user_id`` (last by ``_ord``; insert-then-delete nets to a delete, which the store
  ignores for users it does not hold), then written.

Handing rows over as a file keeps the store's memory bounded too: DuckDB 1.5 holds on to
memory for every Arrow batch appended to a table within a statement, about 30 bytes a
row past its ``memory_limit`` (1.06 GB for 20M narrow rows under a 500MB limit), while
reading Parquet stays within it (0.50 GB).

Every rejected row has a reason a person can read. No Python runs per row.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from profilesync.errors import EDIT_SOURCE, ConfigurationError, ProfilesyncError, UiFix
from profilesync.faults import fault
from profilesync.mapping import quote
from profilesync.model import Mapping
from profilesync.scratch import scratch, spill_directory
from profilesync.store.protocol import DELETED, REJECTED_SAMPLE, ambiguous_reason
from profilesync.warehouses.protocol import OP, ORD, UPSERT

MIN_USER_ID_LENGTH = 5
#: the transform's share of the sync's memory budget: the store stages under half, and
#: the rest is for the batches on their way from the warehouse
MEMORY_SHARE = 0.25
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
    """:class:`profilesync.store.protocol.NetChanges` of one sync."""

    compacted: bool
    con: duckdb.DuckDBPyConnection
    path: Path
    names: list[str]
    read: int = 0
    rejected_count: int = 0
    sample: pa.Table = field(default_factory=_REJECTED_SCHEMA.empty_table)

    def files(self) -> tuple[str, ...]:
        return (str(self.path),)

    def rows(self) -> pa.RecordBatchReader:
        columns = ", ".join(quote(n) for n in ["user_id", DELETED, *self.names])
        return self.con.execute(
            f"SELECT {columns} FROM read_parquet(?) WHERE _reason IS NULL", [str(self.path)]
        ).to_arrow_reader(BATCH_ROWS)

    def rejected(self) -> pa.Table:
        return self.sample


@dataclass
class Transformed:
    """A window transformed at once (previews, tests): net changes and rejected rows."""

    net: pa.Table
    rejected: pa.Table  # reason, row (JSON text)
    read: int
    rejected_count: int


@contextmanager
def transformed(
    reader: pa.RecordBatchReader, mapping: Mapping, *, compact: bool | None = None
) -> Iterator[Stream]:
    """The transformed rows of ``reader``, valid inside the ``with`` block; a change
    window is compacted, a snapshot only with ``compact``."""
    with scratch(MEMORY_SHARE) as con, _incoming(con, reader):
        path = spill_directory(con) / "rows.parquet"
        compacted = OP in reader.schema.names if compact is None else compact
        stream = Stream(compacted, con, path, list(mapping.property_names))
        if stream.compacted:
            _compact(con, mapping, stream)
        else:
            _write(con, f"SELECT * FROM ({_checked_sql(con, mapping)})", mapping, path)
            fault("spill")
            _tally(con, stream)
        yield stream


def transform(reader: pa.RecordBatchReader, mapping: Mapping) -> Transformed:
    """Transform ``reader`` at once: one net change per user, in memory (small windows)."""
    with transformed(reader, mapping, compact=True) as stream:
        net = stream.rows().read_all()
        return Transformed(net, stream.rejected(), stream.read, stream.rejected_count)


def _write(con: duckdb.DuckDBPyConnection, select: str, mapping: Mapping, path: Path) -> None:
    """Write the rows of ``select`` (a checked relation) to ``path``: user_id, the delete
    mark, the properties, why a row is rejected and the rejected row as JSON."""
    columns = _parquet_columns(con, select, ["user_id", DELETED, *mapping.property_names])
    _run(
        con,
        f"""COPY (SELECT {columns}, _reason, {_row_json(mapping)} AS _row FROM ({select}))
            TO '{_literal(path)}' (FORMAT parquet, ROW_GROUP_SIZE {BATCH_ROWS})""",
        mapping,
    )


def _parquet_columns(con: duckdb.DuckDBPyConnection, select: str, names: list[str]) -> str:
    """``names`` as a select list that keeps every value exact through Parquet: DuckDB
    writes a 128-bit integer as a DOUBLE (2**53 + 1 would come back as 2**53), so those
    travel as ``DECIMAL(38,0)``, the type they took through Arrow before."""
    types = {str(r[0]): str(r[1]) for r in con.execute(f"DESCRIBE {select}").fetchall()}
    return ", ".join(
        f"CAST({quote(n)} AS DECIMAL(38,0)) AS {quote(n)}"
        if types.get(n) in ("HUGEINT", "UHUGEINT")
        else quote(n)
        for n in names
    )


def _tally(con: duckdb.DuckDBPyConnection, stream: Stream) -> None:
    """Rows read, rejected rows counted and a sample kept, from the written file (Parquet's
    statistics skip the row groups without a rejected row)."""
    rows = f"read_parquet('{_literal(stream.path)}')"
    counts = con.execute(
        f"SELECT count(*), count_if(_reason IS NOT NULL AND NOT {DELETED}) FROM {rows}"
    ).fetchone()
    assert counts is not None
    stream.read, stream.rejected_count = int(counts[0]), int(counts[1] or 0)
    if stream.rejected_count:
        stream.sample = con.execute(f"""SELECT _reason AS reason, _row AS row FROM {rows}
            WHERE _reason IS NOT NULL AND NOT {DELETED} LIMIT {REJECTED_SAMPLE}""").to_arrow_table()


def _compact(con: duckdb.DuckDBPyConnection, mapping: Mapping, stream: Stream) -> None:
    """Stage the window in the scratch engine, then write each user's net change."""
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
    stream.sample = con.execute(f"""
        SELECT _reason AS reason, {_row_json(mapping)} AS row
        FROM checked WHERE _reason IS NOT NULL AND NOT {DELETED}
        ORDER BY {ORD} LIMIT {REJECTED_SAMPLE}""").to_arrow_table()
    columns = f"user_id, {DELETED}{', ' + names if names else ''}"
    if not repeated:
        net = f"SELECT {columns} FROM checked WHERE _reason IS NULL"
    else:  # each user's last change; within one commit an upsert before a filtered-out row
        net = f"""
            SELECT {columns} FROM checked WHERE _reason IS NULL
              AND user_id NOT IN (SELECT user_id FROM _ambiguous)
            QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY {ORD} DESC, {DELETED}) = 1
            UNION ALL BY NAME SELECT user_id, true AS {DELETED} FROM _ambiguous"""
    exact = _parquet_columns(con, "checked", ["user_id", DELETED, *mapping.property_names])
    con.execute(f"""COPY (SELECT {exact}, NULL::VARCHAR AS _reason, NULL::VARCHAR AS _row
                          FROM ({net})) TO '{_literal(stream.path)}' (FORMAT parquet)""")


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
    except duckdb.OutOfMemoryException:
        raise  # the budget's doing, not the mapping's: the engine names the setting
    except duckdb.Error as exc:
        raise _mapping_error(exc, mapping) from exc


def _mapping_error(exc: duckdb.Error, mapping: Mapping) -> ConfigurationError:
    return ConfigurationError(
        f"the mapping of table {mapping.table} could not be evaluated: {exc}".splitlines()[0]
        + " — check the column names and expressions (profilesync source test NAME shows them)",
        ui_fix=UiFix(
            "Open the source's Edit page and check the column names and expressions", EDIT_SOURCE
        ),
    )


def _literal(path: Path) -> str:
    return str(path).replace("'", "''")


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
