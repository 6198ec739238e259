"""User and group properties: Amplitude's operations applied in arrival order, and each
event stored with the properties its user had when it arrived.

Semantics (Amplitude's): an event's ``user_properties`` are the user's properties at the
event's time. Every event may carry operations in ``user_properties`` (an ``$identify``
event carries nothing else): ``$set``, ``$setOnce``, ``$add``, ``$append``, ``$prepend``,
``$postInsert``, ``$preInsert``, ``$remove``, ``$unset`` and ``$clearAll``; a plain key
(no ``$``) is a ``$set``. They are applied to the user's *current properties*, in arrival
order (the order of the events in a request, requests in the order they commit).

How they are materialised: at ingest, each stored event's ``user_properties`` column holds
the user's properties right after its own operations were applied; an event without
operations gets the user's current properties as they are. So a query that filters
``user:plan = pro`` counts an event sent after an identify that set ``plan``, and not one
sent before it, with no join at query time. The user is ``user_id``, or ``device_id`` for an
anonymous event (identities are not merged: a device's properties do not move to a
``user_id`` it later sends). ``$skip_user_properties_sync: true`` applies an event's
operations to that event only. ``$groupidentify`` events apply ``group_properties``
operations the same way to each group their ``groups`` name, and leave the user alone.

Per batch this is vectorised except where it cannot be: operations are sequential per user,
so the events that carry operations are folded in Python (one ``json.loads`` /
``json.dumps`` each); every other event is given its state by a numpy forward fill and an
Arrow ``take``, and the states of the batch's users come from an in-process cache (a dict
from a 64-bit hash of the user to the JSON text of their properties), kept like the dedup
index: loaded from the store's state table once per process and brought up to date from
the batches committed since, before each write.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

#: the operations, in the order they are applied within one event (a plain key is a $set)
OPERATIONS = (
    "$clearAll",
    "$unset",
    "$setOnce",
    "$set",
    "$add",
    "$append",
    "$prepend",
    "$postInsert",
    "$preInsert",
    "$remove",
)
IDENTIFY = "$identify"
GROUP_IDENTIFY = "$groupidentify"

State = dict[str, Any]
Keys = npt.NDArray[np.uint64]


# -- the operations --------------------------------------------------------------------


def as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _add(state: State, name: str, value: Any) -> None:
    if not _number(value):
        return  # $add takes numbers only: anything else leaves the property as it was
    current = state.get(name)
    state[name] = (current if _number(current) else 0) + value


def _insert(state: State, name: str, values: Any, *, front: bool, unique: bool) -> None:
    current = state.get(name)
    items = [] if current is None else as_list(current)
    new = as_list(values)
    if unique:
        new = [v for i, v in enumerate(new) if v not in items and v not in new[:i]]
    state[name] = new + items if front else items + new


def _remove(state: State, name: str, values: Any) -> None:
    gone = as_list(values)
    current = state.get(name)
    if isinstance(current, list):
        state[name] = [v for v in current if v not in gone]
    elif name in state and current in gone:
        del state[name]


def apply(state: State, operations: State) -> State:
    """``state`` (changed in place and returned) after the operations of one event."""
    plain = {k: v for k, v in operations.items() if k not in OPERATIONS}
    for op in OPERATIONS:
        if op == "$set" and plain:
            _set(state, plain)
        if op not in operations:
            continue
        if op == "$clearAll":
            state.clear()
            continue
        args = operations[op]
        if not isinstance(args, dict):
            continue  # validation refuses these; a stored one from before is ignored
        for name, value in args.items():
            _one(state, op, name, value)
    return state


def _set(state: State, values: State) -> None:
    for name, value in values.items():
        if value is None:
            state.pop(name, None)
        else:
            state[name] = value


def _one(state: State, op: str, name: str, value: Any) -> None:
    if op == "$unset":
        state.pop(name, None)
    elif op == "$setOnce":
        if state.get(name) is None and value is not None:
            state[name] = value
    elif op == "$set":
        _set(state, {name: value})
    elif op == "$add":
        _add(state, name, value)
    elif op == "$remove":
        _remove(state, name, value)
    else:
        front = op in ("$prepend", "$preInsert")
        _insert(state, name, value, front=front, unique=op.endswith("Insert"))


def text(state: State | None) -> str | None:
    """Minified JSON of a state; None for no properties."""
    if not state:
        return None
    return json.dumps(state, separators=(",", ":"), ensure_ascii=False)


# -- the per-process cache of current states -------------------------------------------


@runtime_checkable
class StateLog(Protocol):
    """What a store's events part offers to keep states: a log of the properties each
    batch left, per ``kind`` (``user`` or ``group``), written in the append transaction."""

    def property_states(self, kind: str, since_batch: int) -> tuple[pa.Table, int]:
        """The newest properties (``project_id``, ``scope``, ``id``, ``properties``) of
        everyone written by batches after ``since_batch``; the last batch seen."""
        ...

    def add_property_states(self, kind: str, states: pa.Table, *, batch_id: int) -> None:
        """Log states (``project_id``, ``scope``, ``id``, ``properties``) of a batch."""
        ...


class States:
    """The current properties of every user (or group) of one store file, by key: a
    64-bit hash of (project, scope, id), see :data:`profilesync.events.writer.USER_HASH`."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.current: dict[int, str] = {}
        self.batch_id = -1  # the last committed batch folded in; -1: not loaded yet

    def catch_up(self, log: Any, hasher: Callable[[pa.Table], Any]) -> None:
        """Fold in every state logged by batches committed since this cache was in step;
        ``hasher`` turns logged rows into keys."""
        if not isinstance(log, StateLog):
            return  # a store without a state log: states live in this process only
        table, last = log.property_states(self.kind, self.batch_id)
        if table.num_rows:
            self.update(hasher(table), table.column("properties").to_pylist())
        self.batch_id = max(self.batch_id, last)

    def update(self, keys: Iterable[Any], values: Iterable[str | None]) -> None:
        for k, v in zip(keys, values, strict=True):
            if v is None:
                self.current.pop(int(k), None)
            else:
                self.current[int(k)] = v

    def get(self, key: int) -> str | None:
        return self.current.get(key)


_states: dict[tuple[str, str], States] = {}
_states_lock = threading.Lock()


def states_for(store_id: str, kind: str) -> States:
    """The process-wide cache of one store file's user (or group) states."""
    with _states_lock:
        return _states.setdefault((store_id, kind), States(kind))


# -- materialising a batch -------------------------------------------------------------


@dataclass
class Folded:
    """A batch's user properties at event time, and the states it changed."""

    user_properties: pa.Array  # JSON text per event (null: no properties)
    changed: dict[int, str | None]  # user key -> new current state
    names: dict[str, set[str]]  # event type -> user property names its operations left


def fold(
    keys: Keys,
    has_user: npt.NDArray[np.bool_],
    operations: pa.Array | pa.ChunkedArray,
    change: npt.NDArray[np.bool_],
    skip: npt.NDArray[np.bool_],
    event_types: pa.Array | pa.ChunkedArray,
    current: Callable[[int], str | None],
) -> Folded:
    """Each event's user properties after its own operations (see the module docstring).

    ``operations`` are the events' ``user_properties`` as sent, read where ``change``;
    ``current`` gives a user's state before the batch.
    """
    n = len(keys)
    users, inverse = np.unique(keys, return_inverse=True)
    initial = [current(int(k)) for k in users]  # one lookup per user of the batch
    parsed: dict[int, State] = {}
    latest: list[str | None] = list(initial)
    results: list[str | None] = []
    names: dict[str, set[str]] = {}
    changes = np.flatnonzero(change & has_user)
    sent = operations.take(pa.array(changes, pa.int64())).to_pylist()
    kinds = event_types.take(pa.array(changes, pa.int64())).to_pylist()
    for i, ops, kind in zip(changes, sent, kinds, strict=True):  # in arrival order
        u = int(inverse[i])
        if u not in parsed:
            before = latest[u]
            parsed[u] = json.loads(before) if before else {}
        state = apply(dict(parsed[u]) if skip[i] else parsed[u], json.loads(ops or "{}"))
        results.append(text(state))
        names.setdefault(kind, set()).update(state)
        if not skip[i]:
            latest[u] = results[-1]
    index = _forward_fill(inverse, changes, skip, len(users), n)
    candidates = pa.array(initial + results, pa.string())
    values = candidates.take(pa.array(index)) if n else pa.array([], pa.string())
    values = pc.if_else(pa.array(has_user), values, pa.nulls(n, pa.string()))
    changed = {int(users[u]): latest[u] for u in range(len(users)) if latest[u] != initial[u]}
    return Folded(values, changed, names)


def _forward_fill(
    inverse: npt.NDArray[np.intp],
    changes: npt.NDArray[np.intp],
    skip: npt.NDArray[np.bool_],
    users: int,
    n: int,
) -> npt.NDArray[np.int64]:
    """Per event, the index into ``initial + results`` of its properties: its own result
    if it carries operations, else that of its user's last event before it that changed
    the user (``$skip_user_properties_sync`` events change nobody), else the user's state."""
    rank = np.full(n, -1, np.int64)
    rank[changes] = np.arange(len(changes))
    own = rank >= 0
    lasting = own & ~skip
    order = np.argsort(inverse, kind="stable")  # by user, arrival order within each
    base = inverse[order].astype(np.int64) * (n + 1)
    marks = np.where(lasting[order], base + 1 + np.arange(n), base)
    filled = np.maximum.accumulate(marks) if n else marks
    at = filled - base - 1  # the sorted position of the user's last change so far, or -1
    last = np.empty(n, np.int64)
    last[order] = np.where(at >= 0, order[np.maximum(at, 0)], -1)  # as an event index
    index = inverse.astype(np.int64)
    before = last >= 0
    index[before] = users + rank[last[before]]
    index[own] = users + rank[own]
    return index
