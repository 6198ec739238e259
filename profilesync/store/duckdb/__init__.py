"""The embedded store: one DuckDB file for profiles, events and everything about syncing.

- :mod:`.schema`: the tables and the migrations run when a file is opened;
- :mod:`.catalog`: settings, connections, sources, runs, rejected rows, usage;
- :mod:`.profiles`: a table of current rows per source, changed by a sync in one
  transaction;
- :mod:`.events`: events, projects and the event catalog.

:class:`DuckDBStore` implements :class:`profilesync.store.protocol.Store`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
from sqlglot import exp

from profilesync.errors import ConfigurationError
from profilesync.faults import fault as _fault
from profilesync.model import MEMORY_LIMIT_SETTING, Source, json_value, memory_limit, now
from profilesync.sandbox import lock_down, locked
from profilesync.scratch import threads_for
from profilesync.store.backends import DUCKDB, refuse_other_backend
from profilesync.store.duckdb.events import DuckDBEvents
from profilesync.store.duckdb.profiles import ProfileTables
from profilesync.store.duckdb.schema import SCHEMA_VERSION, StoreTooNewError, migrate, version
from profilesync.store.home import STORE_FILE, connect, first_line, prepare_home, private_files
from profilesync.store.protocol import TEMP_DIR, Capabilities, Store

__all__ = [
    "SCHEMA_VERSION",
    "STORE_FILE",
    "DuckDBStore",
    "StoreTooNewError",
    "_fault",
    "json_value",
    "now",
]


class DuckDBStore(ProfileTables):
    """The embedded profile store in ``<home>/profilesync.duckdb``."""

    capabilities = Capabilities(atomic_apply=True, dialect="duckdb")
    #: the sqlglot dialect compiled queries are rendered in
    dialect = "duckdb"
    events_relation = DuckDBEvents.relation

    def __init__(
        self, home: Path | str, *, wait_seconds: float = 10.0, check_backend: bool = True
    ) -> None:
        """Open (or create) the store of ``home``; a home made with another backend is
        refused unless ``check_backend`` is False (the caller opening the catalog of it)."""
        self.home = Path(home)
        prepare_home(self.home)
        self.path = self.home / STORE_FILE
        self.con = connect(self.path, wait_seconds)
        if not locked(self.con):  # a second store on this file shares the first's database
            self.con.execute("SET GLOBAL TimeZone = 'UTC'")  # for cursors and connections too
            try:
                _bound_memory(self.con, self.home)
            except BaseException:
                self.con.close()
                raise
            # event queries run here: only the store's file and the sync's spill files
            lock_down(self.con, allowed_dirs=[str(self.home / TEMP_DIR)])
        try:
            migrate(self.con)
            self.events = DuckDBEvents(self.con)
            if check_backend:
                refuse_other_backend(self, self.home, DUCKDB)
        except BaseException:
            self.con.close()
            raise

    def read(self, query: exp.Expr, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one compiled read-only query (a sqlglot expression over this store's
        relations), rendered in :attr:`dialect`; the rows as tuples."""
        return _read(self.con, query, params)

    @contextmanager
    def reader(self) -> Iterator[CursorReader]:
        """A cursor of the store's database: long reads without holding the store's lock."""
        cursor = CursorReader(self.con.cursor())
        try:
            yield cursor
        finally:
            cursor.con.close()

    def profile_relation(self, source: Source) -> str:
        return source.profile_table

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> DuckDBStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _bound_memory(con: duckdb.DuckDBPyConnection, home: Path) -> None:
    """The store's memory limit, half the ``sync_memory_limit`` setting (read before the
    configuration is locked; the sync's scratch engine has the other half), and its spill
    directory in the home's temp directory."""
    temp = home / TEMP_DIR
    with private_files():
        temp.mkdir(mode=0o700, exist_ok=True)
    quoted = str(temp / "store").replace("'", "''")
    con.execute(f"SET temp_directory = '{quoted}'")
    stored = None
    if version(con) >= 1:
        row = con.execute(
            "SELECT value FROM settings WHERE key = ?", [MEMORY_LIMIT_SETTING]
        ).fetchone()
        stored = row[0] if row else None
    try:
        limit = memory_limit(stored)
    except ConfigurationError:  # a value this code cannot read: the default, not a dead store
        limit = memory_limit(None)
    con.execute(f"SET memory_limit = '{int(limit) // 2}B'")
    con.execute(f"SET threads = {threads_for(int(limit) // 2)}")
    con.execute("SET enable_progress_bar = false")  # it would print into --json output
    # Closing does not fold the write-ahead log into the file: a small sync into a large
    # store would pay for rewriting the row groups it touched (0.5 s at 5M users) at every
    # command's exit. DuckDB checkpoints once the log passes 16MB, and replays it on open.
    con.execute("PRAGMA disable_checkpoint_on_shutdown")
    # parallel inserts and joins need not hold batches back to keep their order: every
    # query that shows rows in an order says ORDER BY
    con.execute("SET preserve_insertion_order = false")


class CursorReader:
    """A DuckDB connection or cursor of the store's database as a query reader."""

    dialect = DuckDBStore.dialect

    def __init__(self, con: Any) -> None:
        self.con = con

    def read(self, query: exp.Expr, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return _read(self.con, query, params)


def _read(con: Any, query: exp.Expr, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Rows of ``query`` rendered for DuckDB. A relation that disappears meanwhile (a source
    deleted, a property dropped while a long query runs) is the user's to retry, not a bug."""
    try:
        return list(con.execute(query.sql(dialect="duckdb"), list(params)).fetchall())
    except duckdb.CatalogException as exc:
        raise ConfigurationError(
            f"a profile table changed while the query ran ({first_line(str(exc))}); "
            "run the query again"
        ) from exc


#: mypy checks here that the DuckDB store is a whole :class:`Store`
_check: type[Store] = DuckDBStore
