"""Decoding the changes wal2json (format version 2) wrote into mapped Arrow rows.

The JSON is parsed in DuckDB over Arrow batches and every value is converted from
Postgres' text form by the same SQL casts as a snapshot, so snapshot and change values are
identical. Only transactions that committed after the checkpoint count; a TRUNCATE, or an
update whose unchanged large value was not sent, stops the sync instead of guessing.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from profilesync.errors import ChangeTrackingError, TableReplacedError
from profilesync.mapping import quote
from profilesync.model import Checkpoint, Mapping
from profilesync.warehouses.postgres.catalog import Column, Relation, pick
from profilesync.warehouses.postgres.driver import duck, scalar_duck
from profilesync.warehouses.postgres.slot import lsn_int, lsn_text
from profilesync.warehouses.protocol import DELETE, OP, ORD, UPSERT, Changes

#: one wal2json v2 change, as much of it as profilesync reads
_CHANGE_JSON = (
    '{"action": "VARCHAR", "columns": [{"name": "VARCHAR", "value": "JSON"}], '
    '"identity": [{"name": "VARCHAR", "value": "JSON"}]}'
)
#: wal2json's commit marker as written without include-xids / include-timestamp
_COMMIT = '{"action":"C"}'


def decode(
    raw: pa.Table, relation: Relation, mapping: Mapping, checkpoint: Checkpoint, source_name: str
) -> Changes:
    """wal2json rows -> mapped columns + ``_op``/``_ord``, all in DuckDB."""
    wanted = pick(relation.columns, mapping.columns, relation.label)
    since = lsn_int(checkpoint.position)
    con = duck()
    try:
        con.register("peeked", raw)
        _stage(con, wanted, since)
        position = scalar_duck(con, f"SELECT coalesce(max(commit_lsn), {since}) FROM commits")
        _refuse_unreadable(con, wanted, relation, source_name)
        schema = pa.schema(
            [
                *(pa.field(c.name, c.arrow) for c in wanted),
                pa.field(OP, pa.string()),
                pa.field(ORD, pa.int64()),
            ]
        )
        table = con.execute(_rows_sql(wanted)).to_arrow_table()
    finally:
        con.close()
    new = Checkpoint(lsn_text(max(position, since)), checkpoint.identity, checkpoint.extra)
    return Changes(
        pa.RecordBatchReader.from_batches(schema, table.cast(schema).to_batches()), new, full=False
    )


def _stage(con: duckdb.DuckDBPyConnection, wanted: tuple[Column, ...], since: int) -> None:
    """One row per change of a transaction that committed after the checkpoint.

    For each mapped column ``i``: whether the new row (``np{i}``) and the old row
    (``op{i}``) hold it, and its text (``nv{i}``, ``ov{i}``). Transactions arrive in commit
    order; ``n`` is the position in that stream.
    """
    positions, values = [], []
    for i, c in enumerate(wanted):
        name = c.name.replace("'", "''")
        for side, key in (("n", "cols"), ("o", "ids")):
            positions.append(f"list_position({side}_names, '{name}') AS {side}x{i}")
            values.append(
                f"{side}x{i} IS NOT NULL AS {side}p{i}, {key}[{side}x{i}].value->>'$' AS {side}v{i}"
            )
    con.execute(f"""
        CREATE TEMP TABLE commits AS SELECT xid, max(lsn) AS commit_lsn FROM peeked
        WHERE data = '{_COMMIT}' GROUP BY xid;
        CREATE TEMP TABLE changes AS SELECT n, action, {", ".join(values)} FROM (
            SELECT *, {", ".join(positions)} FROM (
                SELECT n, s.action AS action, s.columns AS cols, s.identity AS ids,
                       list_transform(s.columns, x -> x.name) AS n_names,
                       list_transform(s.identity, x -> x.name) AS o_names
                FROM (SELECT p.n, json_transform(p.data, '{_CHANGE_JSON}') AS s FROM peeked p
                      JOIN commits c ON c.xid = p.xid
                      WHERE c.commit_lsn > {since} AND p.data <> '{_COMMIT}')))
        WHERE action IN ('I', 'U', 'D', 'T')""")


def _refuse_unreadable(
    con: duckdb.DuckDBPyConnection, wanted: tuple[Column, ...], relation: Relation, source_name: str
) -> None:
    """A TRUNCATE, or an update whose unchanged large (TOASTed) value was not sent."""
    if scalar_duck(con, "SELECT count(*) FROM changes WHERE action = 'T'"):
        raise TableReplacedError(
            f"table {relation.label} was truncated (as a full refresh does). Nothing was applied. "
            f"Run `profilesync sync {source_name} --resync` to diff the table against the store."
        )
    unsent = " OR ".join(f"NOT (np{i} OR op{i})" for i in range(len(wanted)))
    if scalar_duck(con, f"SELECT count(*) FROM changes WHERE action = 'U' AND ({unsent})"):
        raise ChangeTrackingError(
            f"an UPDATE of {relation.label} left a large (TOASTed, over ~2 kB) mapped value unchanged, "
            "and Postgres does not send such values in the change stream. Nothing was applied. Run "
            f"ALTER TABLE {relation.qualified} REPLICA IDENTITY FULL; then "
            f"`profilesync sync {source_name} --resync`."
        )


def _rows_sql(wanted: tuple[Column, ...]) -> str:
    """Upserts (the new row, old values filling unsent ones) and deletes (the old row).

    An update emits a delete of its old row only when a mapped value in the old row
    differs (e.g. the user id changed); the delete sorts before the upsert.
    """
    new = ", ".join(
        f"{c.cast(f'CASE WHEN np{i} THEN nv{i} ELSE ov{i} END')} AS {quote(c.name)}"
        for i, c in enumerate(wanted)
    )
    old = ", ".join(f"{c.cast(f'ov{i}')} AS {quote(c.name)}" for i, c in enumerate(wanted))
    moved = " OR ".join(
        f"(op{i} AND np{i} AND ov{i} IS DISTINCT FROM nv{i})" for i in range(len(wanted))
    )
    return f"""
        SELECT {new}, '{UPSERT}' AS {OP}, n * 2 + 1 AS {ORD} FROM changes WHERE action IN ('I', 'U')
        UNION ALL
        SELECT {old}, '{DELETE}', n * 2 FROM changes
        WHERE action = 'D' OR (action = 'U' AND ({moved}))"""
