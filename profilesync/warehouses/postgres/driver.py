"""The driver plumbing every Postgres module shares: psycopg, its errors, a DuckDB session.

psycopg is imported lazily so that the postgres extra is only needed by postgres sources.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import duckdb

from profilesync.errors import (
    ConcurrentSyncError,
    ConfigurationError,
    MissingDependencyError,
    ProfilesyncError,
    WarehouseUnavailableError,
)

if TYPE_CHECKING:
    import psycopg

#: every session reads values in one text form: UTC, ISO dates, round-trippable floats
SESSION = "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET extra_float_digits = 1"


@functools.cache
def _duck_database() -> duckdb.DuckDBPyConnection:
    """Types the rows Postgres sent; no file is any business of it, so none is in reach."""
    from profilesync.sandbox import lock_down

    con = duckdb.connect()
    lock_down(con)
    return con


def duck() -> duckdb.DuckDBPyConnection:
    """A session of one in-memory DuckDB per process: opening a database costs ~40 ms, a
    session ~1 ms. Temporary tables and registered batches stay private to the session."""
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
            "privileges a source needs and the GRANT to run"
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
            "what a source needs (wal_level, wal2json, privileges, replica identity)"
        ) from None


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def scalar(conn: psycopg.Connection[Any], sql: str, params: list[Any] | None = None) -> Any:
    row = conn.execute(sql, params).fetchone()
    return row[0] if row else None


def scalar_duck(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    return int(row[0]) if row and row[0] is not None else 0
