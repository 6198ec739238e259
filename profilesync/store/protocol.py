"""What the engine, the events domain, queries and use cases need from a profile store.

A store is one protocol made of parts, so a backend can be read part by part:

- :class:`Catalog`: settings, connections, sources and their checkpoints, runs, rejected
  rows, usage and the quota;
- :class:`~profilesync.store.access.Access`: users, API tokens and the audit log;
- :class:`~profilesync.store.alerting.Alerting`: alert channels, deliveries and state;
- :class:`~profilesync.store.metrics.Metrics`: run totals per source for monitoring;
- :class:`Profiles`: applying a sync's net changes, reading and exporting profiles,
  property statistics and removal;
- :class:`Events` (``store.events``): append with ``insert_id`` dedup support, projects,
  the event catalog;
- :class:`Query`: compiled sqlglot queries run in the store's dialect over named
  relations (:attr:`Query.events_relation`, :meth:`Query.profile_relation`).

:class:`Capabilities` says what a backend guarantees (``atomic_apply``: one transaction
covers a whole sync: data, checkpoint, run and usage). The embedded default is
:class:`profilesync.store.duckdb.DuckDBStore`; open one without naming it through
:func:`profilesync.store.open_store`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, Self

import pyarrow as pa
from sqlglot import exp

from profilesync.model import Checkpoint, Connection, Mapping, Source, SyncResult
from profilesync.store.access import Access
from profilesync.store.alerting import Alerting
from profilesync.store.cohorts import Cohorts
from profilesync.store.metrics import Metrics

#: the boolean column of a net change that marks a delete (see profilesync.engine.transform)
DELETED = "_deleted"
#: the home's directory for spill files (a sync's scratch engines, the store's own queries)
TEMP_DIR = "tmp"
#: rejected rows kept per run (all are counted)
REJECTED_SAMPLE = 1000


def ambiguous_reason(user_id: str, rows: str) -> str:
    """SQL for the reason a user's rows are rejected when it has several current rows at
    once; ``user_id`` and ``rows`` are SQL expressions (the id, how many rows)."""
    return (
        f"'user_id ' || to_json({user_id}) || ' has ' || {rows} || ' rows at once (duplicate "
        "keys in the table or in one commit): a profile takes one row per user'"
    )


@dataclass(frozen=True)
class Capabilities:
    """What a backend guarantees; callers branch on these, never on the backend's name."""

    #: one transaction covers a whole sync (rows, checkpoint, run, usage): all or nothing
    atomic_apply: bool
    #: the sqlglot dialect compiled queries are rendered in
    dialect: str


@dataclass(frozen=True)
class PropertyStats:
    """One stored property column: its SQL type, users with a value, last change."""

    type: str
    users: int
    last_changed: datetime | None


@dataclass(frozen=True)
class Project:
    """A stream of events with its own API key (the key itself is never stored)."""

    id: int
    name: str
    key_hint: str
    created_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        created = self.created_at.astimezone(UTC).isoformat() if self.created_at else None
        return {"name": self.name, "api_key_hint": self.key_hint, "created_at": created}


class NetChanges(Protocol):
    """A sync's transformed rows, handed to :meth:`Profiles.apply` as one stream.

    :meth:`rows` is a stream of bounded batches: columns ``user_id``, ``DELETED``, then
    the properties; :meth:`files` the same rows on disk. A store never needs the whole
    window in memory (it stages the rows in its own engine, which spills to disk). When :attr:`compacted`
    holds, the stream has at most one row per user (the net change of a change window).
    Otherwise it is a snapshot as read: a user on several rows at once that are not
    deletes is *ambiguous*, and the store rejects those rows (reason
    :func:`ambiguous_reason`) and removes the user's profile; a user whose rows are all
    deletes (filtered out by the mapping) is deleted.

    :attr:`read`, :attr:`rejected_count` and :meth:`rejected` (columns ``reason``, ``row``
    as JSON text; at most :data:`REJECTED_SAMPLE` rows) are complete once the stream is
    read to its end.
    """

    @property
    def compacted(self) -> bool: ...
    def rows(self) -> pa.RecordBatchReader: ...
    def files(self) -> tuple[str, ...]:
        """The same rows as Parquet files in the home's temp directory, for a store that
        reads files itself: columns ``user_id``, ``DELETED``, the properties, and
        ``_reason``; only rows whose ``_reason`` is NULL are to be applied."""
        ...

    @property
    def read(self) -> int: ...
    @property
    def rejected_count(self) -> int: ...
    def rejected(self) -> pa.Table: ...


class QuotaPolicy(Protocol):
    """A plan's monthly operation limit (see profilesync.engine.quota)."""

    @property
    def plan(self) -> str: ...
    @property
    def limit(self) -> int: ...
    def check(self, used: int, operations: int) -> None: ...


class Catalog(Protocol):
    """Settings, connections, sources with checkpoints, runs, rejected rows, usage."""

    def get_setting(self, key: str, default: str | None = None) -> str | None: ...
    def set_setting(self, key: str, value: str | None) -> None: ...
    def quota(self) -> QuotaPolicy: ...

    def add_connection(self, connection: Connection) -> None: ...
    def has_connection(self, name: str) -> bool: ...
    def get_connection(self, name: str) -> Connection: ...
    def list_connections(self) -> list[Connection]: ...
    def update_connection(self, connection: Connection) -> None: ...
    def delete_connection(self, name: str) -> None: ...

    def add_source(self, source: Source) -> Source: ...
    def check_property_names(self, source_name: str, mapping: Mapping) -> None: ...
    def get_source(self, name: str) -> Source: ...
    def list_sources(self) -> list[Source]: ...
    def update_source(self, name: str, **changes: Any) -> Source: ...
    def delete_source(self, name: str) -> None: ...

    def record_failed_run(self, source: Source | None, result: SyncResult) -> SyncResult: ...
    def runs(self, source: str, limit: int = 20) -> list[dict[str, Any]]: ...
    def rejected_rows(self, run_id: int, limit: int = 100) -> list[dict[str, Any]]: ...
    def usage(self) -> dict[str, Any]: ...
    def usage_by_day_and_source(self) -> list[dict[str, Any]]: ...


class Profiles(Protocol):
    """Current profile rows, one relation per source."""

    def apply(
        self,
        source: Source,
        changes: NetChanges,
        checkpoint: Checkpoint,
        result: SyncResult,
        *,
        full: bool,
        quota: QuotaPolicy,
    ) -> SyncResult:
        """Apply net changes; with ``full`` users absent from them are deleted. Only real
        differences are written and metered; rows, checkpoint, run and usage commit together
        where :attr:`Capabilities.atomic_apply` holds. ``result.read`` and
        ``result.rejected`` are set from ``changes`` after its stream is read (ambiguous
        rows of a snapshot count as rejected)."""
        ...

    def profile_tables(self) -> list[tuple[Source, list[str]]]: ...
    def profile_schemas(self) -> list[tuple[Source, dict[str, str]]]: ...
    def profile_count(self, source: Source) -> int: ...
    def get_profile(self, user_id: str, *, detail: bool = False) -> dict[str, Any]: ...
    def export_profiles(self, batch_size: int = 10_000) -> Iterator[dict[str, Any]]: ...
    def property_stats(self, source: Source) -> dict[str, PropertyStats]: ...
    def drop_property(self, source: Source, name: str, mapping: Mapping) -> Source: ...
    def rename_property(self, source: Source, old: str, new: str, mapping: Mapping) -> Source:
        """Save ``mapping`` (``source``'s with ``old`` shown as ``new``) and rename the
        stored values' column with it: no row is rewritten, nothing is metered."""
        ...

    def edit_source(
        self,
        source: Source,
        mapping: Mapping,
        *,
        drops: Sequence[str] = (),
        renames: Sequence[tuple[str, str]] = (),
        resync: Sequence[str] = (),
        **changes: Any,
    ) -> Source:
        """Save an edit of ``source`` as one: ``mapping`` and ``changes`` (as
        :meth:`Catalog.update_source` takes them), the stored columns of ``drops`` dropped
        and of ``renames`` (old, new) renamed, and with ``resync`` reasons the mark that
        makes the next sync a resync. Where column changes are transactional (DuckDB) it
        all commits in one transaction or not at all; elsewhere (ClickHouse) the stored
        columns change first, after a resync mark, and the catalog then commits in one
        transaction, so a failure between heals at the next sync."""
        ...


class Events(Protocol):
    """Append-only events, their projects and the catalog of names seen.

    Appending is a batch transaction: :meth:`begin`, :meth:`recent_ids` (to bring a dedup
    index up to date), :meth:`next_batch_id`, any number of :meth:`append`, then
    :meth:`commit` or :meth:`rollback`. Callers serialize the writers of one store.
    """

    def store_id(self) -> str: ...
    def add_project(self, name: str, key_hash: str, key_hint: str) -> Project: ...
    def list_projects(self) -> list[Project]: ...
    def find_project(self, name: str) -> Project | None: ...
    def project_by_key_hash(self, key_hash: str) -> Project | None: ...
    def set_project_key(self, project_id: int, key_hash: str, key_hint: str) -> None: ...
    def delete_project(self, project_id: int) -> int: ...

    def begin(self) -> None: ...
    def next_batch_id(self) -> int: ...
    def recent_ids(self, since_batch: int, cutoff: datetime) -> tuple[pa.Table, int]:
        """The ``insert_id`` s of events in batches after ``since_batch`` received at or
        after ``cutoff`` (columns ``insert_id``, ``device_id``, ``project_id``,
        ``received_ms``: an event is a duplicate by device and insert id), and the
        largest batch id stored. The dedup index hashes them itself: any backend serves it."""
        ...

    def append(
        self,
        project_id: int,
        events: pa.Table,
        catalog: pa.Table,
        *,
        batch_id: int,
        received_at: datetime,
    ) -> None: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def catalog(self, project_id: int | None) -> list[tuple[str, str, list[str]]]: ...


class Reader(Protocol):
    """Runs compiled read-only queries."""

    @property
    def dialect(self) -> str: ...
    def read(self, query: exp.Expr, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...


class Query(Reader, Protocol):
    """Compiled queries and the relations they name."""

    #: the relation holding every event (columns of :data:`profilesync.events.validate.FIELDS`)
    events_relation: str

    def profile_relation(self, source: Source) -> str: ...
    def reader(self) -> AbstractContextManager[Reader]:
        """A reader for long queries that need not hold the store's lock."""
        ...


class Store(Catalog, Access, Alerting, Cohorts, Metrics, Profiles, Query, Protocol):
    """A profile store: the parts above, its home directory and its capabilities."""

    @property
    def home(self) -> Path: ...
    @property
    def capabilities(self) -> Capabilities: ...
    @property
    def events(self) -> Events: ...
    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, *exc: object) -> None: ...
