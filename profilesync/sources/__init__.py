"""Warehouse sources, one module per kind, imported only when used."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from profilesync.errors import ConfigurationError, ProfilesyncError
from profilesync.model import Connection
from profilesync.sources.base import WarehouseSource

#: kind -> "module:Class"; drivers load lazily so a missing extra only hurts its own kind
KINDS: dict[str, str] = {
    "delta": "profilesync.sources.delta:DeltaSource",
    "postgres": "profilesync.sources.postgres:PostgresSource",
    "ducklake": "profilesync.sources.ducklake:DuckLakeSource",
    "duckdb": "profilesync.sources.duckdb:DuckDBSource",
    "snowflake": "profilesync.sources.snowflake:SnowflakeSource",
    "databricks": "profilesync.sources.databricks:DatabricksSource",
}


def source_class(kind: str) -> Any:
    try:
        target = KINDS[kind]
    except KeyError:
        raise ConfigurationError(
            f"unknown connection kind {kind!r}: choose one of {', '.join(sorted(KINDS))}"
        ) from None
    module, _, name = target.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("profilesync"):
            raise ConfigurationError(
                f"connection kind {kind!r} is not available in this build"
            ) from exc
        raise


def open_source(connection: Connection, source_name: str = "") -> WarehouseSource:
    """Instantiate the source for a connection; ``source_name`` scopes per-source state.

    Every error that leaves the source has the connection's secrets blanked out: drivers
    quote connection strings (and pieces of mis-encoded passwords) in their messages, and
    those messages are shown in the CLI, the API, the UI and stored with failed runs.
    """
    with scrubbed(connection):
        source = source_class(connection.kind)(connection, source_name)
    return cast(WarehouseSource, _Scrubbing(source, connection))


@contextmanager
def scrubbed(connection: Connection) -> Iterator[None]:
    """Re-raise a :class:`ProfilesyncError` with ``connection``'s secrets replaced by ``***``."""
    try:
        yield
    except ProfilesyncError as exc:
        from profilesync.secrets import scrub

        message = str(exc)
        clean = scrub(message, connection.kind, connection.config)
        if clean != message:
            exc.args = (clean,)
        raise


class _Scrubbing:
    """A warehouse source whose method calls go through :func:`scrubbed`."""

    def __init__(self, inner: Any, connection: Connection) -> None:
        self._inner = inner
        self._connection = connection

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if not callable(value) or isinstance(value, type):
            return value

        @functools.wraps(value)
        def call(*args: Any, **kwargs: Any) -> Any:
            with scrubbed(self._connection):
                return value(*args, **kwargs)

        return call


@contextmanager
def opened(connection: Connection, source_name: str = "") -> Iterator[WarehouseSource]:
    """:func:`open_source`, closed when the block ends (drivers hold network connections)."""
    source = open_source(connection, source_name)
    try:
        yield source
    finally:
        source.close()


def validate_config(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """Check a connection's settings for its kind and return them normalised."""
    cls = source_class(kind)
    result: dict[str, Any] = cls.validate_config(config)
    return result
