"""Every statement that creates, changes or drops a table of the ClickHouse store, for one
server or for a cluster: the one place the store's DDL is written.

:class:`Layout` renders them. On one server (chdb, or a ``clickhouse://`` URL without
``cluster``) a table is what its name says. On a cluster (``?cluster=NAME``) each table of
the store is two:

- ``<name>_local`` on every node, created ``ON CLUSTER`` with a ``Replicated`` engine
  (``ReplicatedReplacingMergeTree`` for profile rows, ``ReplicatedMergeTree`` for events;
  the Keeper path ``/clickhouse/tables/{shard}/{database}/{table}``, the replica
  ``{replica}``: the nodes' macros);
- ``<name>``, a ``Distributed`` table over them, which the store reads and writes as it
  would the single table. Rows are sharded by user: profiles by ``cityHash64(user_id)``,
  events by ``cityHash64(coalesce(user_id, device_id, ''))``, so a user's profile rows and
  events are on the same shard; the current view of a source is a view over the local
  table on each node with a ``Distributed`` table over those, so ``FINAL`` merges a
  user's versions where they are, and a segmentation joins events to profiles shard by
  shard (``distributed_product_mode = 'local'``, :data:`CLUSTER_SETTINGS`).

A sync commits as on one server: its rows go (through the ``Distributed`` table, in the
foreground) to the shards' ``<source>_pending_local``, and after the catalog commits each
shard attaches them (``ALTER TABLE ... ON CLUSTER ... ATTACH PARTITION ... FROM``). A
sync's scratch tables (``_stage``, ``_repeats``, ``_plan``) live on the node the store
talks to, so a cluster URL names one node, not a load balancer.

``Layout(cluster, replicated=False, on_cluster=False)`` is the same layout without Keeper:
plain engines with ``Distributed`` tables over them, no ``ON CLUSTER`` (what chdb runs,
given a cluster of one local shard in its configuration).
"""

from __future__ import annotations

from dataclasses import dataclass

from profilesync.store.clickhouse.driver import quote_name
from profilesync.store.clickhouse.schema import EVENTS, EVENTS_COLUMNS, column_type, literal

#: the Keeper path and replica name of a replicated table (the nodes' macros)
REPLICA_PATH = "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}'"
#: settings of a connection to a cluster: inserts reach the shards before they return, a
#: join of two distributed tables runs shard by shard (both are sharded by user)
CLUSTER_SETTINGS = {
    "distributed_foreground_insert": "1",
    "distributed_product_mode": "local",
}
#: a table's engine: (engine, its arguments, the clauses after it), and its sharding key
_PROFILES = ("ReplacingMergeTree", "_version, _is_deleted", "ORDER BY user_id")
_EVENTS = (
    "MergeTree",
    "",
    "PARTITION BY toYYYYMM(`time`) ORDER BY (project_id, event_type, `time`)",
)
_BY_USER = "cityHash64(user_id)"
_BY_EVENT_USER = "cityHash64(coalesce(user_id, device_id, ''))"
LOCAL = "_local"


@dataclass(frozen=True)
class Layout:
    """The store's tables on one server (``cluster`` None) or on a cluster."""

    cluster: str | None = None
    #: on a cluster: ``Replicated`` engines (False: plain ones, as chdb has no Keeper)
    replicated: bool = True
    #: on a cluster: DDL ``ON CLUSTER`` (False: on the node the store talks to)
    on_cluster: bool = True
    #: the database the ``Distributed`` tables read (None: the current one)
    database: str | None = None

    # -- names -----------------------------------------------------------------------
    def local(self, name: str) -> str:
        """The table holding ``name``'s rows on a node (``name`` itself on one server)."""
        return name + LOCAL if self.cluster else name

    def logical(self, name: str) -> str:
        """The store's name of a table listed on a node (``profiles_1_local``: ``profiles_1``)."""
        return name.removesuffix(LOCAL) if self.cluster else name

    def _on(self) -> str:
        return f" ON CLUSTER {quote_name(self.cluster)}" if self.cluster and self.on_cluster else ""

    # -- tables ----------------------------------------------------------------------
    def events(self) -> list[str]:
        """The events table (if missing)."""
        columns = f"({EVENTS_COLUMNS},\n    INDEX batches batch_id TYPE minmax GRANULARITY 1)"
        return self._create(EVENTS, columns, _EVENTS, _BY_EVENT_USER)

    def profiles(self, table: str, columns: dict[str, str]) -> list[str]:
        """A source's table of versioned rows (if missing): the newest ``_version`` of a
        user wins, ``_is_deleted`` marks a delete; ``columns`` maps names to DuckDB types."""
        props = "".join(
            f", {quote_name(n)} {column_type(t, n)} COMMENT {literal(t)}"
            for n, t in columns.items()
        )
        body = (
            f"(user_id String{props}, _synced_at DateTime64(6, 'UTC'), _version UInt64, "
            "_is_deleted UInt8)"
        )
        return self._create(table, body, _PROFILES, _BY_USER)

    def like(self, new: str, table: str) -> list[str]:
        """``new``, empty, with the columns of the profile table ``table`` (a sync's pending
        rows, a type change's copy); replaced if it exists."""
        engine, args, clauses = _PROFILES
        if self.cluster and self.replicated:
            engine, args = "Replicated" + engine, f"{REPLICA_PATH}, {args}"
        return [
            *self.drop(new),
            f"CREATE TABLE {self.local(new)}{self._on()} AS {self.local(table)} "
            f"ENGINE = {engine}({args}) {clauses}",
            *self._distributed(new, _BY_USER),
        ]

    def current_view(self, view: str, table: str) -> list[str]:
        """The current rows of a source: the newest version of each user, deletes left out."""
        select = (
            f"SELECT * EXCEPT (_version, _is_deleted) FROM {self.local(table)} FINAL "
            "WHERE _is_deleted = 0"
        )
        made = f"CREATE OR REPLACE VIEW {self.local(view)}{self._on()} AS {select}"
        return [made, *self._distributed(view, _BY_USER, replace=True)]

    def _create(
        self, name: str, body: str, engine: tuple[str, str, str], shard_key: str
    ) -> list[str]:
        kind, args, clauses = engine
        if self.cluster and self.replicated:
            kind, args = "Replicated" + kind, ", ".join(a for a in (REPLICA_PATH, args) if a)
        made = (
            f"CREATE TABLE IF NOT EXISTS {self.local(name)}{self._on()} {body} "
            f"ENGINE = {kind}({args}) {clauses}"
        )
        return [made, *self._distributed(name, shard_key)]

    def _distributed(self, name: str, shard_key: str, *, replace: bool = False) -> list[str]:
        if not self.cluster:
            return []
        database = quote_name(self.database) if self.database else "currentDatabase()"
        verb = "CREATE OR REPLACE TABLE" if replace else "CREATE TABLE IF NOT EXISTS"
        return [
            f"{verb} {name}{self._on()} AS {self.local(name)} ENGINE = Distributed("
            f"{quote_name(self.cluster)}, {database}, {self.local(name)}, {shard_key})"
        ]

    # -- changes -----------------------------------------------------------------------
    def alter(self, table: str, action: str) -> list[str]:
        """One ``ALTER`` (add, drop or change a column) of a table and what reads it."""
        statements = [f"ALTER TABLE {self.local(table)}{self._on()} {action}"]
        if self.cluster:
            statements.append(f"ALTER TABLE {table}{self._on()} {action}")
        return statements

    def attach(self, table: str, pending: str) -> list[str]:
        """The parts of ``pending`` attached to ``table`` (on every shard)."""
        return [
            f"ALTER TABLE {self.local(table)}{self._on()} ATTACH PARTITION tuple() "
            f"FROM {self.local(pending)}"
        ]

    def exchange(self, copy: str, table: str) -> list[str]:
        """``copy`` takes ``table``'s place and the other way round, in one step."""
        swapped = [f"EXCHANGE TABLES {self.local(copy)} AND {self.local(table)}{self._on()}"]
        if self.cluster:  # the Distributed tables take the swapped columns
            for name in (table, copy):
                swapped += self._distributed(name, _BY_USER, replace=True)
        return swapped

    def delete(self, table: str, where: str) -> list[str]:
        """Delete rows of ``table`` (lightweight ``DELETE``; on every shard)."""
        return [f"DELETE FROM {self.local(table)}{self._on()} WHERE {where}"]

    def drop(self, name: str) -> list[str]:
        """Drop a table or view of the store, if it exists (and its local tables)."""
        names = [name, self.local(name)] if self.cluster else [name]
        return [f"DROP TABLE IF EXISTS {quote_name(n)}{self._on()} SYNC" for n in names]

    @staticmethod
    def drop_scratch(name: str) -> list[str]:
        """Drop a sync's scratch table (on the node the store talks to), if it exists."""
        return [f"DROP TABLE IF EXISTS {quote_name(name)} SYNC"]
