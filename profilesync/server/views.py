"""What the API and the pages both show: the use cases of :mod:`profilesync.app`, plus the
scheduler's view of each source (state, next run), which only the server has.

Every function takes the store and expects the caller to hold the store lock.
"""

from __future__ import annotations

from typing import Any

from profilesync.app import Store
from profilesync.app import connections as _connections
from profilesync.app import sources as _sources
from profilesync.app.connections import (
    clean_config,
    connection_doc,
    table_columns,
    test_connection,
    update_connection,
)
from profilesync.app.properties import list_properties as properties
from profilesync.app.properties import remove_property, without_property
from profilesync.app.settings import usage as _usage
from profilesync.app.sources import (
    FREQUENCIES,
    SourceSpec,
    check_frequency,
    delete_explanation,
    frequency_problems,
    resolve,
    test_spec,
)
from profilesync.model import Connection, Source

__all__ = [
    "FREQUENCIES",
    "SourceSpec",
    "add_connection",
    "check_frequency",
    "clean_config",
    "connection_doc",
    "create_source",
    "delete_explanation",
    "delete_source",
    "frequency_problems",
    "list_tables",
    "properties",
    "remove_property",
    "resolve",
    "source_doc",
    "table_columns",
    "test_spec",
    "update_connection",
    "usage",
    "without_property",
]

list_tables = test_connection


def add_connection(store: Store, name: str, kind: str, config: dict[str, Any]) -> Connection:
    """Save a connection from a form or JSON body (blank fields dropped), without listing
    the warehouse's tables first: the UI and API test a connection separately."""
    return _connections.add_connection(store, name, kind, clean_config(config), no_check=True)[0]


def create_source(store: Store, spec: SourceSpec, *, force: bool = False) -> Source:
    """Save a source after Test mapping's checks, as `source add` does; refused on failures."""
    return _sources.add_source(store, spec, no_check=force)[0]


def source_doc(store: Store, scheduler: Any, source: Source) -> dict[str, Any]:
    """The source's JSON (as ``source list --json`` prints it) with its scheduling state."""
    return {**_sources.source_doc(store, source), **scheduler.status(source)}


def delete_source(store: Store, scheduler: Any, name: str, *, force: bool = False) -> None:
    """Free warehouse resources (a Postgres slot), then drop the source and its properties;
    ``force`` deletes it even when the warehouse cannot be reached."""
    _sources.delete_source(store, name, force=force, force_hint="delete it with force=true")
    scheduler.forget(name)


def usage(store: Store) -> dict[str, Any]:
    """This month's usage plus operations per day and source."""
    return _usage(store, by_day=True)
