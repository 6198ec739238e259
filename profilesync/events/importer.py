"""``profilesync events import FILE``: JSON Lines, CSV or Parquet files of events.

Rows have the HTTP V2 event shape (``event_type``, ``user_id``/``device_id``, ``time`` in
ms since the epoch or ISO 8601, ``event_properties``/``user_properties`` as objects or
JSON text, ``insert_id``, ...). Files are read in chunks by pyarrow (or split into lines
for JSON Lines), each chunk is validated by one DuckDB statement over Arrow, and the
valid rows are appended in one transaction: an import is stored whole or not at all
(``PROFILESYNC_FAULT=import_chunk`` or ``import_before_commit`` kills the process inside
that transaction, for the crash tests).
Bad rows are skipped with their line (JSON Lines) or row number (CSV, Parquet) and the
reasons; events whose ``insert_id`` arrived in the last 7 days are ignored.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from profilesync.errors import ConfigurationError, NotFoundError
from profilesync.events import ingest, validate
from profilesync.events.projects import resolve_project
from profilesync.faults import fault
from profilesync.store.protocol import Store

FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
BLOCK_BYTES = 16 << 20
PARQUET_ROWS = 250_000
SHOWN_REJECTS = 100
Progress = Callable[[int, int], None]


@dataclass
class ImportResult:
    """What an import did; ``rejected_rows`` holds the first rejected rows."""

    file: str
    format: str
    project: str
    rows: int = 0
    imported: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejected_rows: list[dict[str, Any]] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class _Chunk:
    """A piece of the file as a raw relation over the registered table ``_chunk``."""

    table: pa.Table
    raw_sql: str
    done: int  # progress units (bytes or rows) read so far
    unit: str  # "line" or "row"
    malformed: list[dict[str, Any]] = field(default_factory=list)


def detect_format(path: Path, given: str | None = None) -> str:
    if given:
        if given not in set(FORMATS.values()):
            raise ConfigurationError(f"--format {given!r}: choose jsonl, csv or parquet")
        return given
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ConfigurationError(
            f"cannot tell the format of {path.name}: name it .jsonl, .csv or .parquet, "
            "or pass --format"
        )
    return fmt


def import_file(
    store: Store,
    path: Path | str,
    *,
    project: str | None = None,
    fmt: str | None = None,
    progress: Progress | None = None,
    rejects: BinaryIO | None = None,
) -> ImportResult:
    """Validate and store every row of ``path``; write every rejected row to ``rejects``."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"no file {path}: check the path")
    fmt = detect_format(path, fmt)
    target = resolve_project(store, project)
    result = ImportResult(str(path), fmt, target.name)
    try:
        _import(store, path, target.id, result, progress, rejects)
    except (pa.ArrowException, UnicodeDecodeError) as exc:  # nothing was committed
        reason = " ".join(str(exc).split())[:300]
        raise ConfigurationError(
            f"{path.name} cannot be read as {fmt}: {reason} (check the file, or pass --format)"
        ) from exc
    return result


def _import(
    store: Store,
    path: Path,
    project_id: int,
    result: ImportResult,
    progress: Progress | None,
    rejects: BinaryIO | None,
) -> None:
    """Every chunk validated and appended in one transaction (rolled back on any error).

    Chunks are checked on an in-memory DuckDB of their own; only valid rows reach the store.
    """
    fmt = result.format
    total = path.stat().st_size if fmt != "parquet" else pq.ParquetFile(path).metadata.num_rows
    with closing(validate.checker()) as con, ingest.Writer(store, project_id) as writer:
        for chunk in _chunks(path, fmt, result):
            con.register("_chunk", chunk.table)
            try:
                typed = con.execute(validate.validate_sql(chunk.raw_sql)).to_arrow_table()
            finally:
                con.unregister("_chunk")
            valid, rejected = validate.split(typed)
            done = writer.append(ingest.prepare(con, valid.drop_columns(["idx"])))
            result.rows += typed.num_rows + len(chunk.malformed)
            result.imported += done.stored
            result.duplicates += done.duplicates
            _record(result, chunk, rejected, rejects)
            if progress:
                progress(chunk.done, total)
            fault("import_chunk")  # crash tests: a chunk written, the import not committed
        fault("import_before_commit")


def _record(result: ImportResult, chunk: _Chunk, rejected: pa.Table, out: BinaryIO | None) -> None:
    """Count the rejected rows; keep the first ones and write them all to ``out``."""
    rows = chunk.malformed + [
        {chunk.unit: r["idx"], "reasons": [x["message"] for x in r["reasons"]]}
        for r in rejected.to_pylist()  # only the rejected rows
    ]
    result.rejected += len(rows)
    room = SHOWN_REJECTS - len(result.rejected_rows)
    result.rejected_rows.extend(rows[: max(room, 0)])
    if out is not None:
        for row in rows:
            out.write((json.dumps(row) + "\n").encode())


def _chunks(path: Path, fmt: str, result: ImportResult) -> Iterator[_Chunk]:
    if fmt == "jsonl":
        return _jsonl(path)
    if fmt == "csv":
        return _csv(path, result)
    return _parquet(path, result)


# -- JSON Lines -------------------------------------------------------------------------


def _jsonl(path: Path) -> Iterator[_Chunk]:
    """Blocks of whole lines; ``idx`` is the 1-based line number."""
    raw = validate.raw_from_lines("SELECT idx, line FROM _chunk WHERE trim(line) <> ''")
    first_line, done, rest = 1, 0, b""
    with path.open("rb") as f:
        while True:
            block = f.read(BLOCK_BYTES)
            data = rest + block
            cut = data.rfind(b"\n") if block else len(data)
            if cut < 0:
                rest = data
                continue
            rest, data = data[cut + 1 :], data[:cut]
            done += len(data) + (1 if block else 0)
            if data:
                lines = data.decode("utf-8", errors="replace").split("\n")
                table = pa.table(
                    {
                        "idx": pa.array(np.arange(first_line, first_line + len(lines))),
                        "line": pa.array(lines, pa.string()),
                    }
                )
                first_line += len(lines)
                yield _Chunk(table, raw, min(done, path.stat().st_size), "line")
            if not block:
                return


# -- CSV --------------------------------------------------------------------------------


class _Counting(io.RawIOBase):
    """A file that counts the bytes read from it, for the progress bar."""

    def __init__(self, f: BinaryIO) -> None:
        self.f, self.count = f, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.f.read(len(buffer))
        buffer[: len(data)] = data
        self.count += len(data)
        return len(data)


def _csv(path: Path, result: ImportResult) -> Iterator[_Chunk]:
    """Every column read as text; ``idx`` numbers the well-formed records from 1."""
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        header = next(csv.reader(f), [])
    if not header:
        raise ConfigurationError(f"{path.name} is empty: a CSV import needs a header row")
    malformed: list[dict[str, Any]] = []

    def bad_record(row: Any) -> str:
        malformed.append(
            {
                "row": None,
                "reasons": [
                    f"malformed CSV record: {row.actual_columns} columns instead of "
                    f"{row.expected_columns}: {row.text[:200]}"
                ],
            }
        )
        return "skip"

    with path.open("rb") as raw_file:
        counting = _Counting(raw_file)
        reader = pacsv.open_csv(
            io.BufferedReader(counting, BLOCK_BYTES),
            read_options=pacsv.ReadOptions(block_size=BLOCK_BYTES),
            parse_options=pacsv.ParseOptions(
                newlines_in_values=True, invalid_row_handler=bad_record
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in header},
                strings_can_be_null=True,
                null_values=[""],
            ),
        )
        result.ignored_columns = validate.ignored_columns(reader.schema)
        first = 1
        for batch in reader:
            table = pa.Table.from_batches([batch])
            yield _columns_chunk(table, first, counting.count, malformed)
            malformed = []
            first += table.num_rows
        if malformed:
            yield _columns_chunk(
                pa.table({n: pa.array([], pa.string()) for n in header}),
                first,
                counting.count,
                malformed,
            )


def _columns_chunk(
    table: pa.Table, first: int, done: int, malformed: list[dict[str, Any]]
) -> _Chunk:
    numbered = table.append_column(
        "_row", pa.array(np.arange(first, first + table.num_rows), pa.int64())
    )
    raw = validate.raw_from_columns("SELECT * FROM _chunk", table.schema, "_row")
    return _Chunk(numbered, raw, done, "row", list(malformed))


# -- Parquet ----------------------------------------------------------------------------


def _parquet(path: Path, result: ImportResult) -> Iterator[_Chunk]:
    """Row groups as they come; ``idx`` is the 1-based row number."""
    parquet = pq.ParquetFile(path)
    result.ignored_columns = validate.ignored_columns(parquet.schema_arrow)
    first = 1
    for batch in parquet.iter_batches(batch_size=PARQUET_ROWS):
        table = pa.Table.from_batches([batch])
        yield _columns_chunk(table, first, first + table.num_rows - 1, [])
        first += table.num_rows
