"""Decoding the changes wal2json (format version 2) wrote into mapped Arrow rows.

The JSON is parsed in DuckDB and every value is converted from Postgres' text form by the
same SQL casts as a snapshot, so snapshot and change values are identical. Only
transactions that committed after the checkpoint count; a TRUNCATE, or an update whose
unchanged large value was not sent, stops the sync instead of guessing.

The window is staged in a scratch engine (a memory limit, spilling to disk past it): the
peeked rows, then one row per change. The checks that need the whole window run there
before anything is returned; the mapped rows then stream out of the engine, which stays
open until they are read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import duckdb
import pyarrow as pa

from profilesync.errors import ChangeTrackingError, TableReplacedError, UiFix, resync_fixes
from profilesync.mapping import quote
from profilesync.model import Checkpoint, Mapping
from profilesync.warehouses.postgres.catalog import Column, Relation, pick
from profilesync.warehouses.postgres.driver import held, scalar_duck
from profilesync.warehouses.postgres.slot import lsn_int, lsn_text
from profilesync.warehouses.protocol import DELETE, OP, ORD, UPSERT, Changes, change_schema

#: one wal2json v2 change, as much of it as profilesync reads
#: (values as text: JSON strings unquoted, numbers as written or as DuckDB prints the
#: double, which the casts read back to the same value; one JSON function per row, as
#: each one holds a parse buffer per thread against the engine's memory limit)
_CHANGE_JSON = (
    '{"action": "VARCHAR", "columns": [{"name": "VARCHAR", "value": "VARCHAR"}], '
    '"identity": [{"name": "VARCHAR", "value": "VARCHAR"}]}'
)
#: wal2json's commit marker as written without include-xids / include-timestamp
_COMMIT = '{"action":"C"}'
#: rows per batch the decoded window streams in
BATCH_ROWS = 100_000
#: the decoder's share of the sync's memory budget: the transform takes a quarter and
#: the store stages under half (see profilesync.engine.transform)
MEMORY_SHARE = 0.25
#: stages the peeked window as table ``peeked`` of the engine, returns the table read
Peek = Callable[[duckdb.DuckDBPyConnection], Relation]
#: the checkpoint the window reaches and the schema of its rows
Head = tuple[Checkpoint, pa.Schema]


def decode(peek: Peek, mapping: Mapping, checkpoint: Checkpoint, source_name: str) -> Changes:
    """wal2json rows -> mapped columns + ``_op``/``_ord``, all in DuckDB, streamed.

    Errors about the window (a TRUNCATE, an unsent value) are raised here, before the
    reader exists; the reader keeps the engine open until it is drained or dropped.
    """

    def start(con: duckdb.DuckDBPyConnection) -> tuple[Head, Iterator[pa.RecordBatch]]:
        relation = peek(con)
        wanted = pick(relation.columns, mapping.columns, relation.label)
        since = lsn_int(checkpoint.position)
        position = _stage(con, wanted, since)
        _refuse_unreadable(con, wanted, relation, source_name)
        schema = change_schema(pa.schema([pa.field(c.name, c.arrow) for c in wanted]))
        new = Checkpoint(lsn_text(position), checkpoint.identity, checkpoint.extra)
        reader = con.execute(_rows_sql(wanted)).to_arrow_reader(BATCH_ROWS)
        return (new, schema), _cast(reader, schema)

    (new, schema), batches = held(start, MEMORY_SHARE)
    return Changes(pa.RecordBatchReader.from_batches(schema, batches), new, full=False)


def _cast(reader: pa.RecordBatchReader, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    for batch in reader:
        yield batch.cast(schema)


def _stage(con: duckdb.DuckDBPyConnection, wanted: tuple[Column, ...], since: int) -> int:
    """The changes of transactions that committed after the checkpoint, parsed once into
    table ``parsed``, and view ``changes`` over it; returns the position of the last
    commit (``since`` when there is none). ``peeked`` is dropped once parsed.

    Logical decoding sends whole transactions in commit order, so those that committed
    after ``since`` are the rows after the last commit marker at or before it (``n`` is
    the position in the stream): no join, whose hash table of the window a small memory
    limit could not hold. The parsed table keeps the JSON's lists as they are: a few
    columns, which a table being written under a small memory limit can afford.

    ``changes`` has one row per change and, for each mapped column ``i``, whether the new
    row (``np{i}``) and the old row (``op{i}``) hold it, and its text (``nv{i}``, ``ov{i}``).
    """
    commits = f"FROM peeked WHERE data = '{_COMMIT}'"
    after = scalar_duck(con, f"SELECT coalesce(max(n), 0) {commits} AND lsn <= {since}")
    position = scalar_duck(con, f"SELECT coalesce(max(lsn), {since}) {commits}")
    positions, values = [], []
    for i, c in enumerate(wanted):
        name = c.name.replace("'", "''")
        for side, key in (("n", "cols"), ("o", "ids")):
            positions.append(f"list_position({side}_names, '{name}') AS {side}x{i}")
            values.append(
                f"{side}x{i} IS NOT NULL AS {side}p{i}, {key}[{side}x{i}].value AS {side}v{i}"
            )
    con.execute(f"""
        CREATE TEMP TABLE parsed AS SELECT n, s.action AS action, s.columns AS cols,
               s.identity AS ids
        FROM (SELECT n, json_transform(data, '{_CHANGE_JSON}') AS s FROM peeked
              WHERE n > {after} AND data <> '{_COMMIT}');
        DROP TABLE peeked;
        CREATE TEMP VIEW changes AS SELECT n, action, {", ".join(values)} FROM (
            SELECT *, {", ".join(positions)} FROM (
                SELECT n, action, cols, ids, list_transform(cols, x -> x.name) AS n_names,
                       list_transform(ids, x -> x.name) AS o_names
                FROM parsed WHERE action IN ('I', 'U', 'D', 'T')))""")
    return max(position, since)


def _refuse_unreadable(
    con: duckdb.DuckDBPyConnection, wanted: tuple[Column, ...], relation: Relation, source_name: str
) -> None:
    """A TRUNCATE, or an update whose unchanged large (TOASTed) value was not sent."""
    if scalar_duck(con, "SELECT count(*) FROM changes WHERE action = 'T'"):
        raise TableReplacedError(
            f"table {relation.label} was truncated (as a full refresh does). Nothing was applied. "
            f"Run `profilesync sync {source_name} --resync` to diff the table against the store.",
            **resync_fixes(source_name),
        )
    unsent = " OR ".join(f"NOT (np{i} OR op{i})" for i in range(len(wanted)))
    if scalar_duck(con, f"SELECT count(*) FROM changes WHERE action = 'U' AND ({unsent})"):
        raise ChangeTrackingError(
            f"an UPDATE of {relation.label} left a large (TOASTed, over ~2 kB) mapped value unchanged, "
            "and Postgres does not send such values in the change stream. Nothing was applied. Run "
            f"ALTER TABLE {relation.qualified} REPLICA IDENTITY FULL; then "
            f"`profilesync sync {source_name} --resync`.",
            cli_fix=f"profilesync sync {source_name} --resync",
            ui_fix=UiFix(
                f"Run ALTER TABLE {relation.qualified} REPLICA IDENTITY FULL, then Resync",
                f"/sources/{source_name}#resync",
            ),
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
