"""Warehouse sources, one module per kind, imported only when used."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from profilesync.errors import ConfigurationError
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
    """Instantiate the source for a connection; ``source_name`` scopes per-source state."""
    source: WarehouseSource = source_class(connection.kind)(connection, source_name)
    return source


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
