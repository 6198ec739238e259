"""Event use cases: ingest a batch, import a file, known types, segmentation, user lookup.

The domain work lives in :mod:`profilesync.events` (validation, ingestion, import) and in
the query modules; these functions are what the shells call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from profilesync import query as q
from profilesync.app.home import Store
from profilesync.app.projects import project_for_key
from profilesync.events import importer, ingest
from profilesync.events.importer import ImportResult, detect_format
from profilesync.query import Filter, PropertyRef, SegmentationQuery

__all__ = [
    "Filter",
    "ImportResult",
    "PropertyRef",
    "SegmentationQuery",
    "detect_format",
    "import_file",
    "ingest_batch",
    "known",
    "plan_segmentation",
    "profile_names",
    "reader",
    "run_segmentation",
    "segmentation",
    "user_lookup",
]


def ingest_batch(store: Store, batch: ingest.Batch) -> dict[str, Any]:
    """Store a parsed ``/2/httpapi`` batch for the project its key names; the answer to send."""
    project = project_for_key(store, batch.api_key)
    if project is None:
        raise ingest.InvalidApiKeyError()
    done = ingest.store_batch(store, project.id, batch)
    return ingest.answer(batch, done)


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


def plan_segmentation(store: Store, query: SegmentationQuery) -> Any:
    """The first half of :func:`segmentation`: what to run (reads the store's catalog)."""
    return q.plan(store, query)


def run_segmentation(plan: Any, con: Any) -> dict[str, Any]:
    """The second half: run ``plan`` on a :func:`reader` and shape the answer."""
    return q.shape(plan, q.run(con, plan))


@contextmanager
def reader(store: Store) -> Iterator[Any]:
    """A read connection of its own for a long query, usable outside the store lock."""
    cur = store.con.cursor()
    try:
        yield cur
    finally:
        cur.close()


def user_lookup(store: Store, user_id: str, limit: int = 20) -> dict[str, Any]:
    """A user's current profile and their latest events."""
    return q.user_lookup(store, user_id, limit)
