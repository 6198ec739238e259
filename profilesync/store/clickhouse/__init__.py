"""The scale-out store: profiles and events in ClickHouse, the catalog in the home's DuckDB file.

**Catalog vs data.** Settings, connections, sources with their checkpoints, runs, rejected
rows, usage, projects and the catalog of event names need transactions and stay small:
they stay in the home's transactional DuckDB file (the DuckDB store's own catalog code,
:class:`profilesync.store.duckdb.catalog.CatalogTables`). Profile rows and events need
scale: they go to ClickHouse, through a :class:`~.driver.Driver` (chdb in this process
with its data under ``<home>/clickhouse``, or a server over HTTP for a ``clickhouse://``
URL). Every table is made, changed and dropped by :mod:`.cluster` (one server's plain
tables, or a cluster's replicated tables with distributed ones over them).

**Atomicity without multi-statement transactions.** Profile rows are versioned: each
source has a table ``ReplacingMergeTree(_version, _is_deleted) ORDER BY user_id``, and a
sync writes only the rows that differ (deletes as ``_is_deleted`` rows) with ``_version``
= the source's committed version + 1. The *committed version* of each source is kept in
the catalog and advances in the same DuckDB transaction as the checkpoint, the run, its
rejected rows and the usage: that commit is the sync's commit. Rows of a version above
the committed one are never visible:

- a sync writes its rows into the source's *pending* table (same structure), not into the
  table readers see; only after the catalog commit are the pending parts attached to the
  source's table (``ATTACH PARTITION ... FROM``) and the pending table dropped;
- before every sync, and when the store is opened, a left-over pending table is settled
  from the catalog: rows of a committed version are attached (a crash after the commit),
  rows above it are dropped (a crash before): re-applying a window is idempotent, and a
  retried window is metered once (usage commits with the version);
- readers see :meth:`ClickHouseStore.profile_relation`: a view of the newest version of
  each user in the source's table (``FINAL``), which holds committed versions only.

Uncommitted rows are kept out of the readers' table rather than filtered by
``_version <= committed`` on read: ``FINAL`` applies a ``WHERE`` after it merges versions,
and background merges may fold a committed row into a newer uncommitted one, so a filter
alone could hide or lose the committed row; a separate pending table cannot be merged
into it. Events follow the same rule with batch ids (see :mod:`.events`).

Property types are reported as the DuckDB store names them; a type change converts the
stored values where every one converts (see :mod:`.profiles`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlglot import exp

from profilesync.errors import ConfigurationError
from profilesync.model import Source
from profilesync.query.compiler import inline
from profilesync.store.backends import Backend, choose_backend, parse_backend, record_backend
from profilesync.store.clickhouse.cluster import CLUSTER_SETTINGS, Layout
from profilesync.store.clickhouse.driver import ChdbDriver, Driver, HttpDriver, naive_times
from profilesync.store.clickhouse.events import ClickHouseEvents
from profilesync.store.clickhouse.profiles import ProfileRows
from profilesync.store.clickhouse.schema import EVENTS
from profilesync.store.duckdb import DuckDBStore
from profilesync.store.home import first_line
from profilesync.store.protocol import Capabilities, Store

__all__ = ["DATA_DIR", "ClickHouseStore"]

#: the home's directory of chdb data
DATA_DIR = "clickhouse"


class ClickHouseStore(ProfileRows):
    """Profiles and events in ClickHouse (chdb under ``<home>/clickhouse``), the catalog
    in ``<home>/profilesync.duckdb``."""

    capabilities = Capabilities(atomic_apply=True, dialect="clickhouse")
    dialect = "clickhouse"
    events_relation = EVENTS

    def __init__(
        self,
        home: Path | str,
        *,
        wait_seconds: float = 10.0,
        backend: str | Backend = "chdb",
        catalog: DuckDBStore | None = None,
        layout: Layout | None = None,
        driver: Driver | None = None,
    ) -> None:
        """The store of ``home`` on ``backend`` (``chdb`` or a ``clickhouse://`` URL); its
        catalog is ``catalog`` when the caller opened it (closed with this store). The
        tables' ``layout`` and the ``driver`` follow from the backend unless given."""
        self.catalog_store = catalog or DuckDBStore(
            home, wait_seconds=wait_seconds, check_backend=False
        )
        self.home = self.catalog_store.home
        self.con = self.catalog_store.con
        try:
            wanted = parse_backend(backend) if isinstance(backend, str) else backend
            self.backend = choose_backend(self, self.home, wanted)
            self.layout = layout or layout_of(self.backend)
            self.driver: Driver = driver or _driver(self.home, self.backend, self.layout)
        except BaseException:
            self.catalog_store.close()
            raise
        try:
            record_backend(self, self.home, self.backend)
            self.run(self.layout.events())
            self.events = ClickHouseEvents(self.con, self.driver, self.layout)
            self.events.add_new_fields()
            self.events.clean_up()
            self.settle_all()
        except BaseException:
            self.close()
            raise

    def read(self, query: exp.Expr, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one compiled read-only query, rendered for ClickHouse (values inlined as
        literals: the compiler's numbered parameters have no ClickHouse form)."""
        return _read(self.driver, query, params)

    @contextmanager
    def reader(self) -> Iterator[DriverReader]:
        """Another connection to the engine: long reads without holding the store's lock."""
        reader = DriverReader(self.driver.connect())
        try:
            yield reader
        finally:
            reader.driver.close()

    def profile_relation(self, source: Source) -> str:
        return self.view_name(source)

    def close(self) -> None:
        driver = getattr(self, "driver", None)
        try:
            if driver is not None:
                driver.close()
        finally:
            self.catalog_store.close()

    def __enter__(self) -> ClickHouseStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DriverReader:
    """A driver connection as a query reader."""

    dialect = ClickHouseStore.dialect

    def __init__(self, driver: Driver) -> None:
        self.driver = driver

    def read(self, query: exp.Expr, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return _read(self.driver, query, params)


def _read(driver: Driver, query: exp.Expr, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    sql = inline(query, list(params)).sql(dialect="clickhouse")
    try:
        table = driver.query_arrow(sql)
    except RuntimeError as exc:
        if "UNKNOWN_TABLE" in str(exc) or "Unknown table" in str(exc):
            raise ConfigurationError(
                f"a profile table changed while the query ran ({first_line(str(exc))}); "
                "run the query again"
            ) from exc
        raise
    return [tuple(row.values()) for row in naive_times(table).to_pylist()]


def layout_of(backend: Backend) -> Layout:
    """One server's tables, or a cluster's (``?cluster=NAME``)."""
    server = backend.server
    if server is None or server.cluster is None:
        return Layout()
    return Layout(cluster=server.cluster, database=server.database)


def _driver(home: Path, backend: Backend, layout: Layout) -> Driver:
    if backend.server is None:
        return ChdbDriver(home / DATA_DIR)
    return HttpDriver(backend.server, CLUSTER_SETTINGS if layout.cluster else None)


#: mypy checks here that the ClickHouse store is a whole :class:`Store`
_check: type[Store] = ClickHouseStore
