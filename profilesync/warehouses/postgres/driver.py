"""The driver plumbing every Postgres module shares: psycopg, its errors, scratch DuckDB.

psycopg is imported lazily so that the postgres extra is only needed by postgres sources.
Rows Postgres sends are typed and decoded in a scratch engine
(:func:`profilesync.scratch.scratch`: a memory limit, spilling to disk past it) that
:func:`held` keeps open for as long as the reader it feeds is read.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar, cast

import duckdb
import pyarrow as pa

from profilesync.errors import (
    EDIT_SOURCE,
    ConcurrentSyncError,
    ConfigurationError,
    MissingDependencyError,
    ProfilesyncError,
    UiFix,
    WarehouseUnavailableError,
)
from profilesync.scratch import scratch

if TYPE_CHECKING:
    import psycopg

#: every session reads values in one text form: UTC, ISO dates, round-trippable floats
SESSION = "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET extra_float_digits = 1"


T = TypeVar("T")
#: what the function :func:`held` runs returns: a value for the caller, and the batches
Start = Callable[[duckdb.DuckDBPyConnection], tuple[T, Iterable[pa.RecordBatch]]]


def held(start: Start[T], share: float) -> tuple[T, Iterator[pa.RecordBatch]]:
    """Run ``start`` in a scratch engine opened now and stream the batches it returns.

    The engine is opened in the caller's thread, so it takes the share of the sync's
    budget (a consumer such as DuckDB pulls batches from threads that see no budget). It
    stays open, with its spill directory, until the batches are drained or the iterator
    is dropped (the generator's ``finally``), and closes at once when ``start`` raises.
    """
    steps = _holding(start, share)
    head = next(steps)
    return cast(T, head), cast(Iterator[pa.RecordBatch], steps)


def _holding(start: Start[T], share: float) -> Iterator[object]:
    with scratch(share) as con:
        head, batches = start(con)
        yield head
        yield from batches


def stage(
    con: duckdb.DuckDBPyConnection,
    table: str,
    schema: pa.Schema,
    batches: Iterator[pa.RecordBatch],
) -> None:
    """Copy a stream into ``table`` of ``con`` (spilling past the engine's memory limit).

    DuckDB wraps an exception raised inside the stream into its own error text; the
    stream's own error (a driver error a caller turns into a clear one) is raised instead.
    """
    raised: list[Exception] = []

    def watched() -> Iterator[pa.RecordBatch]:
        try:
            yield from batches
        except Exception as exc:
            raised.append(exc)
            raise

    con.register("_incoming", pa.RecordBatchReader.from_batches(schema, watched()))
    try:
        con.execute(f"CREATE TABLE {table} AS SELECT * FROM _incoming")
    except duckdb.Error:
        if raised:
            raise raised[0] from None
        raise
    finally:
        con.unregister("_incoming")


@functools.cache
def _duck_database() -> duckdb.DuckDBPyConnection:
    """Kept for the old import path (``profilesync.sources.postgres._duck``); the sync path
    uses :func:`held`, whose engines have a memory limit."""
    from profilesync.sandbox import lock_down

    con = duckdb.connect()
    lock_down(con)
    return con


def duck() -> duckdb.DuckDBPyConnection:
    """A session of one in-memory DuckDB per process, without a memory limit: not for a
    sync's rows (see :func:`held`)."""
    return _duck_database().cursor()


def psycopg_module() -> Any:
    try:
        import psycopg
    except ImportError:
        raise MissingDependencyError("psycopg", "postgres") from None
    return psycopg


@contextmanager
def errors() -> Iterator[None]:
    """Driver errors as the error a user can act on."""
    psycopg = psycopg_module()
    try:
        yield
    except ProfilesyncError:
        raise
    except psycopg.errors.InsufficientPrivilege as exc:
        raise ConfigurationError(
            f"PostgreSQL refused: {first_line(exc)}. `profilesync source test NAME` lists the "
            "privileges a source needs and the GRANT to run",
            ui_fix=_TEST_MAPPING,
        ) from None
    except psycopg.errors.ObjectInUse as exc:
        raise ConcurrentSyncError(
            f"PostgreSQL: {first_line(exc)}: another sync of this source is running; try again later"
        ) from None
    except psycopg.Error as exc:
        # connection loss, shutdown or exhausted resources may pass; the rest is a setup issue
        if (exc.sqlstate or "08")[:2] in ("08", "53", "57"):
            raise WarehouseUnavailableError(
                f"PostgreSQL did not answer: {first_line(exc)}. Try again when the server is reachable"
            ) from None
        raise ConfigurationError(
            f"PostgreSQL refused: {first_line(exc)}. `profilesync source test NAME` checks "
            "what a source needs (wal_level, wal2json, privileges, replica identity)",
            ui_fix=_TEST_MAPPING,
        ) from None


#: where the UI lists what a source needs of the server
_TEST_MAPPING = UiFix(
    "Open the source's Edit page and run Test mapping: it lists what the source needs", EDIT_SOURCE
)


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def scalar(conn: psycopg.Connection[Any], sql: str, params: list[Any] | None = None) -> Any:
    row = conn.execute(sql, params).fetchone()
    return row[0] if row else None


def scalar_duck(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    return int(row[0]) if row and row[0] is not None else 0
