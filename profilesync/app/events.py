"""Event use cases: ingest a batch, store or import events, known types, segmentation,
user lookup.

The domain work lives in :mod:`profilesync.events` (validation, ingestion, import) and in
:mod:`profilesync.query`; these functions are what the shells call, and the names they
need from there (the ingestion errors, the query model) are re-exported here so a shell
imports nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa

from profilesync import query as q
from profilesync.app.home import Store
from profilesync.app.projects import project_for_key
from profilesync.errors import ConfigurationError
from profilesync.events import importer, ingest, validate
from profilesync.events.importer import ImportResult, detect_format
from profilesync.events.ingest import (
    Appended,
    Batch,
    InvalidApiKeyError,
    InvalidBatchError,
    PayloadTooLargeError,
    check_size,
    parse_batch,
)
from profilesync.events.projects import resolve_project
from profilesync.events.throttle import Admitted, Rule, Throttle, ThrottledError
from profilesync.query import OPS, Filter, Plan, PropertyRef, SegmentationQuery
from profilesync.store.protocol import Reader

__all__ = [
    "INGEST_ERRORS",
    "OPS",
    "Admitted",
    "Appended",
    "Batch",
    "Filter",
    "ImportResult",
    "InvalidApiKeyError",
    "InvalidBatchError",
    "PayloadTooLargeError",
    "Plan",
    "PropertyRef",
    "Reader",
    "Rule",
    "SegmentationQuery",
    "Throttle",
    "ThrottledError",
    "check_size",
    "detect_format",
    "import_file",
    "ingest_batch",
    "known",
    "parse_batch",
    "plan_segmentation",
    "profile_names",
    "reader",
    "run_segmentation",
    "segmentation",
    "store_events",
    "user_lookup",
]

#: the 400/413/429 errors of ``/2/httpapi``; each carries the JSON ``body`` to answer with
INGEST_ERRORS = (InvalidBatchError, PayloadTooLargeError, InvalidApiKeyError, ThrottledError)


def ingest_batch(store: Store, batch: Batch) -> dict[str, Any]:
    """Store a parsed ``/2/httpapi`` batch for the project its key names; the answer to send."""
    project = project_for_key(store, batch.api_key)
    if project is None:
        raise InvalidApiKeyError()
    done = ingest.store_batch(store, project.id, batch)
    return ingest.answer(batch, done)


def store_events(store: Store, project: str, events: pa.Table) -> Appended:
    """Validate ``events`` and store them in ``project`` in one transaction, all or nothing.

    ``events`` has the columns of HTTP V2 events (``event_type``, ``user_id``, ``time`` in
    ms since the epoch, ``event_properties`` / ``user_properties`` as JSON text, ...), like a
    Parquet import; they pass the checks every event passes, and an ``insert_id`` seen in the
    last 7 days is ignored. One invalid event refuses them all, naming it.
    """
    target = resolve_project(store, project)
    numbered = events.append_column("_row", pa.array(np.arange(events.num_rows), pa.int64()))
    raw = validate.raw_from_columns("SELECT * FROM _events", numbered.schema, "_row")
    with closing(validate.checker()) as con:
        con.register("_events", numbered)
        try:
            typed = con.execute(validate.validate_sql(raw)).to_arrow_table()
        finally:
            con.unregister("_events")
        valid, rejected = validate.split(typed)
        if rejected.num_rows:
            first = rejected.slice(0, 1).to_pylist()[0]
            reasons = "; ".join(r["message"] for r in first["reasons"])
            raise ConfigurationError(
                f"{rejected.num_rows:,} of {typed.num_rows:,} events are invalid, nothing was "
                f"stored: event {first['idx']}: {reasons}"
            )
        prepared = ingest.prepare(con, valid.drop_columns(["idx"]))
    with ingest.Writer(store, target.id) as writer:
        writer.append(prepared)
    return writer.total


def import_file(
    store: Store,
    path: Path,
    *,
    project: str | None = None,
    fmt: str | None = None,
    rejects: BinaryIO | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> ImportResult:
    """Load events from a file: bad rows are skipped with reasons, the rest stored at once."""
    return importer.import_file(
        store, path, project=project, fmt=fmt, rejects=rejects, progress=progress
    )


def known(store: Store, project: str | None = None) -> dict[str, Any]:
    """Known event types (with counts) and property names, by kind."""
    return q.known(store, project)


def profile_names(store: Store) -> set[str]:
    """Names of the profile properties synced so far (to read ``KIND:NAME`` references)."""
    return {name for _, cols in store.profile_tables() for name in cols}


def segmentation(store: Store, query: SegmentationQuery) -> dict[str, Any]:
    """A metric of event types over time, filtered and grouped by current profile properties."""
    return q.segmentation(store, query)


def plan_segmentation(store: Store, query: SegmentationQuery) -> Plan:
    """The first half of :func:`segmentation`: what to run (reads the store's catalog)."""
    return q.plan(store, query)


def run_segmentation(plan: Plan, reader: Reader) -> dict[str, Any]:
    """The second half: run ``plan`` on a :func:`reader` (or the store) and shape the answer."""
    return q.shape(plan, q.run(reader, plan))


@contextmanager
def reader(store: Store) -> Iterator[Reader]:
    """The store's reader for a long query: enter it holding the store's lock, use it after
    letting go (it reads a snapshot of its own), so the query does not hold up ingestion."""
    with store.reader() as r:
        yield r


def user_lookup(store: Store, user_id: str, limit: int = 20) -> dict[str, Any]:
    """A user's current profile and their latest events."""
    return q.user_lookup(store, user_id, limit)
