"""Valid events into the store: one transaction per :class:`Writer`, deduplicated, with
user and group properties applied (see :mod:`profilesync.events.userprops`).

:func:`prepare` does, outside the store's lock, what needs only the events (hashes, the
names they bring); :class:`Writer` then keeps the events whose ``device_id`` and
``insert_id`` did not arrive within the last 7 days (see :mod:`profilesync.events.dedup`),
stores each with its user's properties at that moment, logs the properties it changed,
and commits before anyone is told the events are stored.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from profilesync.events import userprops
from profilesync.events.dedup import ID_HASH, RecentIds, index_for, key
from profilesync.events.validate import scratch
from profilesync.store.protocol import Store

#: buffered events written at once (per project); more are written as they come
FLUSH_ROWS = 50_000
#: a user's key, before the project is mixed in: user_id, else the device (SQL)
USER_HASH = (
    "hash(CASE WHEN user_id IS NULL THEN 'device' ELSE 'user' END, coalesce(user_id, device_id))"
)


@dataclass
class Appended:
    stored: int = 0
    duplicates: int = 0


@dataclass
class Prepared:
    """Valid events with what storing them needs, computed outside the store's lock."""

    events: pa.Table
    id_hashes: np.ndarray[Any, Any]  # dedup.ID_HASH: device_id and insert_id
    has_id: np.ndarray[Any, Any]
    catalog: pa.Table  # distinct (event_type, kind, name): event types and event properties
    user_hashes: np.ndarray[Any, Any]  # USER_HASH
    has_user: np.ndarray[Any, Any]
    operations: np.ndarray[Any, Any]  # carries user property operations (or plain values)
    skip: np.ndarray[Any, Any]  # $skip_user_properties_sync


#: what storing needs from each typed event, computed over it in SQL (see :func:`prepare`)
KEY_COLUMNS = (
    f"{ID_HASH} AS _h, insert_id IS NOT NULL AS _has_id, {USER_HASH} AS _u, "
    f"coalesce(user_id, device_id) IS NOT NULL AND event_type <> '{userprops.GROUP_IDENTIFY}' "
    "AS _has_user, coalesce(user_properties::VARCHAR, '{}') <> '{}' AS _ops, "
    "coalesce(TRY_CAST(skip_user_properties_sync AS BOOLEAN), false) AS _skip, "
    "CASE WHEN event_properties IS NOT NULL THEN json_keys(event_properties) END AS _names"
)
_KEYS = ("_h", "_has_id", "_u", "_has_user", "_ops", "_skip", "_names")


def _flags(table: pa.Table, name: str) -> np.ndarray[Any, Any]:
    return table.column(name).to_numpy(zero_copy_only=False).astype(bool)


def prepare(con: duckdb.DuckDBPyConnection, events: pa.Table) -> Prepared:
    """Hash the dedup and user keys and list the event types and property names of
    ``events``; its :data:`KEY_COLUMNS` are used when it has them (else computed on ``con``)."""
    if "_h" not in events.column_names:
        con.register("_prepare", events)
        try:
            events = con.execute(f"SELECT *, {KEY_COLUMNS} FROM _prepare").to_arrow_table()
        finally:
            con.unregister("_prepare")
    return Prepared(
        events.drop_columns(list(_KEYS)),
        events.column("_h").to_numpy(),
        _flags(events, "_has_id"),
        _catalog(events),
        events.column("_u").to_numpy(),
        _flags(events, "_has_user"),
        _flags(events, "_ops"),
        _flags(events, "_skip"),
    )


def _catalog(events: pa.Table) -> pa.Table:
    """Distinct (event_type, kind, name): each event type, and its event property names."""
    kinds = events.column("event_type").combine_chunks()
    names = events.column("_names").combine_chunks()
    pairs = pa.table(
        {
            "event_type": pa.concat_arrays([kinds, kinds.take(pc.list_parent_indices(names))]),
            "kind": pa.concat_arrays(
                [pa.repeat("type", len(kinds)), pa.repeat("event", len(pc.list_flatten(names)))]
            ).cast(pa.string()),
            "name": pa.concat_arrays(
                [pa.repeat("", len(kinds)).cast(pa.string()), pc.list_flatten(names)]
            ),
        }
    )
    return pairs.group_by(["event_type", "kind", "name"], use_threads=False).aggregate([])


@dataclass
class _Changes:
    """Properties an open transaction changed: seen by its later appends, logged and
    cached when it commits. Values are JSON text (None: no properties left)."""

    states: dict[int, str | None] = field(default_factory=dict)
    names: dict[int, tuple[int, str, str]] = field(default_factory=dict)  # project, scope, id

    def log(self) -> pa.Table:
        rows = [(*self.names[k], v) for k, v in self.states.items()]
        return pa.table(
            {
                "project_id": pa.array([r[0] for r in rows], pa.int64()),
                "scope": pa.array([r[1] for r in rows], pa.string()),
                "id": pa.array([r[2] for r in rows], pa.string()),
                "properties": pa.array([r[3] for r in rows], pa.string()),
            }
        )


class Writer:
    """One transaction appending events (of one project unless :meth:`append` names
    another), ignoring recent ``insert_id`` s of the same ``device_id``.

    Use as a context manager; the events are durable when the ``with`` block ends
    without an error (the store commits). Callers serialize writers of one store (the
    server holds the store lock; the CLI owns the file).
    """

    def __init__(self, store: Store, project_id: int, now: datetime | None = None) -> None:
        self.events = store.events
        self.project_id = project_id
        self.now = (now or datetime.now(UTC)).astimezone(UTC)
        self.now_ms = int(self.now.timestamp() * 1000)
        store_id = self.events.store_id()
        self.index = index_for(store_id)
        self.users = userprops.states_for(store_id, "user")
        self.groups = userprops.states_for(store_id, "group")
        self.pending = RecentIds()  # ids of this transaction, known to the index at commit
        self.changes = {"user": _Changes(), "group": _Changes()}
        self.known = _catalog_for(store_id)  # names the store has (added to at commit)
        self.named: set[tuple[Any, ...]] = set()  # names this transaction adds
        self.buffer: dict[int, list[tuple[pa.Table, pa.Table]]] = {}
        self.buffered = 0
        self.batch_id = 0
        self.total = Appended()

    def __enter__(self) -> Writer:
        self.index.lock.acquire()
        try:
            self.events.begin()
            before = self.index.batch_id
            self.index.catch_up(self.events, self.now)
            # states change only with stored events: no new batch, nothing to read
            if self.index.batch_id != before or self.users.batch_id < 0:
                self.users.catch_up(self.events, _hash_states)
                self.groups.catch_up(self.events, _hash_states)
            # past every batch stored: a store's sequence may restart after a reopen
            # (DuckDB replays a log without the value of a sequence it created)
            self.batch_id = max(self.events.next_batch_id(), self.index.batch_id + 1)
        except BaseException:
            self._abort()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if kind is not None:
            self._abort()
            return
        try:
            self._flush()
            self._log_states()
            self.events.commit()
        except BaseException:
            self._abort()
            raise
        self.known.update(self.named)
        keys = np.concatenate([self.pending.big.keys, self.pending.small.keys])
        self.index.add(keys, np.full(len(keys), self.now_ms, np.int64), self.now)
        self.index.batch_id = max(self.index.batch_id, self.batch_id)
        for cache, changes in (
            (self.users, self.changes["user"]),
            (self.groups, self.changes["group"]),
        ):
            cache.update(changes.states.keys(), changes.states.values())
            cache.batch_id = max(cache.batch_id, self.batch_id)
        self.index.lock.release()

    def _abort(self) -> None:
        try:
            self.events.rollback()
        finally:
            self.index.lock.release()

    def _log_states(self) -> None:
        for kind, changes in self.changes.items():
            if changes.states and isinstance(self.events, userprops.StateLog):
                self.events.add_property_states(kind, changes.log(), batch_id=self.batch_id)

    def append(self, batch: Prepared, project_id: int | None = None) -> Appended:
        """Append prepared valid events (the columns :func:`validate_sql` yields) of the
        writer's project, or of ``project_id``. Appends are buffered and written together
        (one insert per project, up to :data:`FLUSH_ROWS` events) before the commit."""
        project = self.project_id if project_id is None else project_id
        keep, keys = self._fresh(batch, project)
        events, names = self._materialise(batch, keep, project)
        catalog = batch.catalog
        if names:
            catalog = pa.concat_tables([catalog, _catalog_rows(names, "user")])
        self.buffer.setdefault(project, []).append((events, catalog))
        self.buffered += events.num_rows
        if self.buffered >= FLUSH_ROWS:
            self._flush()
        self.pending.add(keys, np.full(len(keys), self.now_ms, np.int64), self.now)
        done = Appended(int(keep.sum()), int(len(keep) - keep.sum()))
        self.total.stored += done.stored
        self.total.duplicates += done.duplicates
        return done

    def _flush(self) -> None:
        """Write the buffered events, one insert per project, with the names the store
        does not have yet (most batches bring none)."""
        for project, parts in self.buffer.items():
            events = pa.concat_tables([e for e, _ in parts], promote_options="default")
            catalog = pa.concat_tables([c for _, c in parts], promote_options="default")
            rows = catalog.to_pylist() if catalog.num_rows else []  # a few distinct names
            new = [r for r in rows if (project, *r.values()) not in self.known]
            self.named.update((project, *r.values()) for r in new)
            catalog = pa.Table.from_pylist(new, schema=catalog.schema)
            self.events.append(
                project, events, catalog, batch_id=self.batch_id, received_at=self.now
            )
        self.buffer, self.buffered = {}, 0

    def _fresh(
        self, batch: Prepared, project_id: int
    ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """Which events to keep (the first of each new device_id + insert_id), and their keys."""
        keys = key(batch.id_hashes, project_id)
        seen = self.index.seen(keys, self.now) | self.pending.seen(keys, self.now)
        first = np.zeros(len(keys), bool)
        ids_at = np.flatnonzero(batch.has_id)
        _, first_pos = np.unique(keys[ids_at], return_index=True)
        first[ids_at[first_pos]] = True
        keep = ~batch.has_id | (first & ~seen)
        return keep, keys[batch.has_id & keep]

    def _materialise(
        self, batch: Prepared, keep: np.ndarray[Any, Any], project_id: int
    ) -> tuple[pa.Table, dict[str, set[str]]]:
        """The kept events with their user's properties at their time (and the group
        properties of ``$groupidentify`` events); the user property names per event type."""
        events = batch.events.filter(pa.array(keep, pa.bool_()))
        users = self.changes["user"]
        ops = batch.operations[keep]
        if not ops.any() and not self.users.current and not users.states:
            names: dict[str, set[str]] = {}  # no properties anywhere: nothing to apply
        else:
            keys = key(batch.user_hashes[keep], project_id)

            def current(k: int) -> str | None:
                return users.states[k] if k in users.states else self.users.get(k)

            folded = userprops.fold(
                keys,
                batch.has_user[keep],
                events.column("user_properties"),
                ops,
                batch.skip[keep],
                events.column("event_type"),
                current,
            )
            events = events.set_column(
                events.schema.get_field_index("user_properties"),
                "user_properties",
                folded.user_properties,
            )
            users.states.update(folded.changed)
            _name(users, folded.changed, keys, events, project_id)
            names = folded.names
        return self._group_identify(events, project_id), names

    def _group_identify(self, events: pa.Table, project_id: int) -> pa.Table:
        """``$groupidentify`` events apply their ``group_properties`` to their groups; each
        is stored with the properties of its (first) group after them. Rare: plain Python."""
        kinds = events.column("event_type")
        at = np.flatnonzero(pc.equal(kinds, userprops.GROUP_IDENTIFY).to_numpy(False))
        if not len(at):
            return events
        changes = self.changes["group"]
        groups = events.column("groups").take(pa.array(at)).to_pylist()
        ops = events.column("group_properties").take(pa.array(at)).to_pylist()
        pairs = [
            (str(t), json.dumps(v) if not isinstance(v, str) else v)
            for doc in groups
            for t, values in json.loads(doc).items()
            for v in userprops.as_list(values)
        ]
        hashes = dict(zip(pairs, _hash_pairs(pairs, project_id), strict=True))
        results = events.column("group_properties").to_pylist()
        for i, doc, sent in zip(at, groups, ops, strict=True):
            first = None
            for t, values in json.loads(doc).items():
                for v in userprops.as_list(values):
                    pair = (str(t), json.dumps(v) if not isinstance(v, str) else v)
                    k = hashes[pair]
                    before = changes.states[k] if k in changes.states else self.groups.get(k)
                    state = userprops.apply(
                        json.loads(before) if before else {}, json.loads(sent or "{}")
                    )
                    changes.states[k] = userprops.text(state)
                    changes.names[k] = (project_id, *pair)
                    first = changes.states[k] if first is None else first
            results[i] = first
        index = events.schema.get_field_index("group_properties")
        return events.set_column(index, "group_properties", pa.array(results, pa.string()))


def _name(
    changes: _Changes,
    changed: dict[int, str | None],
    keys: np.ndarray[Any, Any],
    events: pa.Table,
    project_id: int,
) -> None:
    """Remember who each changed user is (scope and id), for the state log."""
    if not changed:
        return
    users, first = np.unique(keys, return_index=True)
    wanted = np.isin(users, np.fromiter(changed, np.uint64, len(changed)))
    at = dict(zip(users[wanted].tolist(), first[wanted].tolist(), strict=True))
    user_ids = events.column("user_id").take(pa.array(list(at.values()))).to_pylist()
    device_ids = events.column("device_id").take(pa.array(list(at.values()))).to_pylist()
    for k, u, d in zip(at, user_ids, device_ids, strict=True):
        changes.names[k] = (project_id, "user", u) if u is not None else (project_id, "device", d)


def _catalog_rows(names: dict[str, set[str]], kind: str) -> pa.Table:
    rows = [(t, n) for t, found in names.items() for n in sorted(found)]
    return pa.table(
        {
            "event_type": pa.array([r[0] for r in rows], pa.string()),
            "kind": pa.array([kind] * len(rows), pa.string()),
            "name": pa.array([r[1] for r in rows], pa.string()),
        }
    )


def _hash_pairs(pairs: list[tuple[str, str]], project_id: int) -> list[int]:
    """The cache keys of (scope, id) pairs in one project."""
    if not pairs:
        return []
    table = pa.table(
        {
            "project_id": pa.array([project_id] * len(pairs), pa.int64()),
            "scope": [p[0] for p in pairs],
            "id": [p[1] for p in pairs],
        }
    )
    return [int(k) for k in _hash_states(table)]


def _hash_states(table: pa.Table) -> np.ndarray[Any, Any]:
    """The cache keys of logged states (``project_id``, ``scope``, ``id``), hashed as
    :data:`USER_HASH` hashes users, on this thread's in-memory DuckDB."""
    con = scratch()
    con.register("_states", table.select(["scope", "id"]))
    try:
        hashes = con.execute("SELECT hash(scope, id) AS h FROM _states").to_arrow_table()
    finally:
        con.unregister("_states")
    return key(hashes.column("h").to_numpy(), table.column("project_id").to_numpy())


_catalogs: dict[str, set[tuple[Any, ...]]] = {}
_catalogs_lock = threading.Lock()


def _catalog_for(store_id: str) -> set[tuple[Any, ...]]:
    """(project, event type, kind, name) this process knows the store's catalog has."""
    with _catalogs_lock:
        return _catalogs.setdefault(store_id, set())
