"""Reading rows: a COPY of Postgres' text output, parsed by Arrow and typed in DuckDB.

A first sync reads inside the snapshot the replication slot exported (``import_snapshot``),
so the rows read and the changes the slot decodes later meet exactly; diffs and previews
read in a plain ``REPEATABLE READ`` transaction. Either way the reader streams in bounded
memory: COPY output is handed to Arrow's CSV parser a block (``BLOCK_SIZE``) at a time,
each block is typed on its own in one scratch DuckDB per read, and the transaction commits
(and the session closes) when the last batch has been read.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.csv as pacsv

from profilesync.mapping import quote
from profilesync.model import Checkpoint, Mapping
from profilesync.warehouses.postgres.catalog import Column, pick
from profilesync.warehouses.postgres.driver import errors, held
from profilesync.warehouses.protocol import Changes

if TYPE_CHECKING:
    import duckdb
    import psycopg

#: the share of the sync's memory budget typing takes (one COPY block at a time; scratch
#: engines get at least 16 MB)
TYPING_SHARE = 0.1
#: bytes of COPY output Arrow's CSV parser reads at once (a batch is about this size)
BLOCK_SIZE = 1 << 22


def import_snapshot(conn: psycopg.Connection[Any], snapshot: str) -> None:
    """Start ``conn``'s read in the snapshot a replication slot exported."""
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")


def read_rows(
    conn: psycopg.Connection[Any],
    mapping: Mapping,
    columns: tuple[Column, ...],
    source: str,
    limit: int | None,
    checkpoint: Checkpoint,
) -> Changes:
    """The mapped columns of ``source`` (a table or a subquery) as one streamed snapshot."""
    wanted = pick(columns, mapping.columns, source)
    texts = ", ".join(c.text() for c in wanted)
    sql = f"SELECT {texts} FROM {source}" + (f" LIMIT {int(limit)}" if limit is not None else "")
    schema = pa.schema([pa.field(c.name, c.arrow) for c in wanted])
    batches = typed(copy_csv(conn, sql, len(wanted)), wanted, schema)
    return Changes(
        pa.RecordBatchReader.from_batches(schema, commit_after(conn, batches)),
        checkpoint,
        full=True,
    )


class CopyStream(io.RawIOBase):
    """COPY ... TO STDOUT data as a file, handed over many rows at a time."""

    def __init__(self, chunks: Iterator[Any]) -> None:
        self._chunks = chunks
        self._left = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self._left:
            self._left = memoryview(b"".join(itertools.islice(self._chunks, 8192)))
        size = min(len(buffer), len(self._left))
        buffer[:size] = self._left[:size]
        self._left = self._left[size:]
        return size


def copy_csv(
    conn: psycopg.Connection[Any],
    select: str,
    width: int,
    params: list[Any] | None = None,
    names: list[str] | None = None,
    types: list[pa.DataType] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Stream ``select`` as CSV through Arrow's parser (text columns unless ``types``)."""
    names = names or [f"c{i}" for i in range(width)]
    types = types or [pa.string()] * width
    with conn.cursor().copy(f"COPY ({select}) TO STDOUT (FORMAT csv)", params) as copy:
        stream = io.BufferedReader(CopyStream(iter(copy)), BLOCK_SIZE)
        if not stream.peek(1):
            return
        yield from pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(column_names=names, block_size=BLOCK_SIZE),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types=dict(zip(names, types, strict=True)),
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,  # "" is an empty string, nothing is NULL
                null_values=[""],
            ),
        )


def typed(
    batches: Iterator[pa.RecordBatch], columns: tuple[Column, ...], schema: pa.Schema
) -> Iterator[pa.RecordBatch]:
    """Postgres text -> typed Arrow, by the same casts the change stream uses, one batch
    at a time in a scratch engine opened now (one per read: opening one costs ~40 ms)."""
    select = ", ".join(f"{c.cast(f'c{i}')} AS {quote(c.name)}" for i, c in enumerate(columns))

    def each(con: duckdb.DuckDBPyConnection) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            con.register("text_batch", batch)
            table = con.execute(f"SELECT {select} FROM text_batch").to_arrow_table()
            con.unregister("text_batch")
            yield from table.cast(schema).to_batches()

    _, typed_batches = held(lambda con: (None, each(con)), share=TYPING_SHARE)
    return typed_batches


def commit_after(
    conn: psycopg.Connection[Any], batches: Iterator[pa.RecordBatch]
) -> Iterator[pa.RecordBatch]:
    try:
        with errors():
            yield from batches
            conn.execute("COMMIT")
    finally:
        conn.close()
