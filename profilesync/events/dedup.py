"""Which ``(device_id, insert_id)`` pairs arrived in the last 7 days, answered in microseconds.

Amplitude deduplicates on ``device_id`` + ``insert_id`` within 7 days: two devices sending
one ``insert_id`` keep both events (an event without a ``device_id`` counts as the device
"none"). A hash anti-join against the stored events costs a scan of the whole window on every
batch (measured: ~100 ms per 1,000 ids against 10M stored ones), so each process keeps a
sorted index of 64-bit hashes of ``(project_id, device_id, insert_id)`` with their arrival time, in
numpy arrays: a lookup is a binary search, an insert a merge into a small run that is
folded into the big one now and then (dropping expired entries as it goes).

The index is only a cache of the stored events: it is rebuilt from the store when a
process first ingests, and before each batch it loads the batches committed since it was
last in step (``batch_id`` only grows, and writers are serialized by the caller), so two
store objects on one file never miss each other's ids. The store hands back the ids
themselves and they are hashed here, so any store backend serves the index. A 64-bit hash collision would
drop an event; with 10M ids in the window the chance per event is about 5e-13.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from profilesync.events.validate import scratch
from profilesync.store.protocol import Events

WINDOW = timedelta(days=7)
_SMALL_RUN = 262_144

Keys = npt.NDArray[np.uint64]
Times = npt.NDArray[np.int64]


#: DuckDB's 64-bit hash of what identifies an event for dedup (SQL over ``insert_id``, ``device_id``)
ID_HASH = "hash(insert_id, coalesce(device_id, ''))"


def hash_ids(events: pa.Table) -> pa.Table:
    """``h``: :data:`ID_HASH`, and ``has_id``, for each row of ``events`` (``insert_id``, and
    ``device_id`` when the store gives it), computed on this thread's in-memory DuckDB."""
    con = scratch()
    ids = events.select(["insert_id"])
    device = events.column("device_id") if "device_id" in events.column_names else None
    ids = ids.append_column("device_id", device or pa.nulls(len(ids), pa.string()))
    con.register("_ids", ids)
    try:
        return con.execute(
            f"SELECT {ID_HASH} AS h, insert_id IS NOT NULL AS has_id FROM _ids"
        ).to_arrow_table()
    finally:
        con.unregister("_ids")


def key(id_hashes: Keys, project_id: int | npt.NDArray[np.int64]) -> Keys:
    """The index key of ``(project_id, device_id, insert_id)`` from :data:`ID_HASH`."""
    salt = np.asarray(project_id).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    return np.bitwise_xor(id_hashes.astype(np.uint64), salt)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000) if moment.tzinfo else _naive_ms(moment)


def _naive_ms(moment: datetime) -> int:
    return int((moment - datetime(1970, 1, 1)).total_seconds() * 1000)


@dataclass
class _Run:
    keys: Keys = field(default_factory=lambda: np.empty(0, np.uint64))
    times: Times = field(default_factory=lambda: np.empty(0, np.int64))

    def seen(self, keys: Keys, cutoff_ms: int) -> npt.NDArray[np.bool_]:
        """Which ``keys`` are here with a time at or after ``cutoff_ms``."""
        if not len(self.keys):
            return np.zeros(len(keys), bool)
        # equal keys are inserted after each other, so the last one is the newest
        pos = np.searchsorted(self.keys, keys, side="right") - 1
        safe = np.maximum(pos, 0)
        return (pos >= 0) & (self.keys[safe] == keys) & (self.times[safe] >= cutoff_ms)

    def add(self, keys: Keys, times: Times, cutoff_ms: int | None = None) -> None:
        order = np.argsort(keys, kind="stable")
        keys, times = keys[order], times[order]
        if cutoff_ms is not None:
            live = self.times >= cutoff_ms
            self.keys, self.times = self.keys[live], self.times[live]
        at = np.searchsorted(self.keys, keys, side="right")
        self.keys = np.insert(self.keys, at, keys)
        self.times = np.insert(self.times, at, times)


class RecentIds:
    """The hashes of insert_ids received within :data:`WINDOW`, for one store file."""

    def __init__(self) -> None:
        self.big = _Run()
        self.small = _Run()
        self.batch_id = -1  # the last committed batch folded in; -1: not loaded yet
        self.lock = threading.Lock()

    def seen(self, keys: Keys, now: datetime) -> npt.NDArray[np.bool_]:
        cutoff = _ms(now - WINDOW)
        return self.big.seen(keys, cutoff) | self.small.seen(keys, cutoff)

    def add(self, keys: Keys, times: Times, now: datetime) -> None:
        if not len(keys):
            return
        self.small.add(keys, times)
        if len(self.small.keys) >= max(_SMALL_RUN, len(self.big.keys) // 8):
            self.big.add(self.small.keys, self.small.times, _ms(now - WINDOW))
            self.small = _Run()

    def catch_up(self, events: Events, now: datetime) -> None:
        """Fold in every batch committed since this index was last in step with the store."""
        table, last = events.recent_ids(self.batch_id, now - WINDOW)
        if table.num_rows:
            hashes = hash_ids(table).column("h").to_numpy()
            keys = key(hashes, table.column("project_id").to_numpy())
            times = table.column("received_ms").to_numpy().astype(np.int64)
            self.add(keys, times, now)
        self.batch_id = max(self.batch_id, last)


_indexes: dict[str, RecentIds] = {}
_indexes_lock = threading.Lock()


def index_for(store_id: str) -> RecentIds:
    """The process-wide index of one store file (by the id made with its events tables)."""
    with _indexes_lock:
        return _indexes.setdefault(store_id, RecentIds())
