"""Warehouses, one folder per kind, imported only when used.

Each kind lives in ``warehouses/<kind>/``: ``spec.py`` declares its settings (no driver
imported, so forms and validation work without the extra installed), ``warehouse.py`` its
class implementing :class:`~profilesync.warehouses.protocol.Warehouse`. To add a kind,
add its folder and one line to :data:`KINDS`.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from profilesync.errors import ConfigurationError, ProfilesyncError
from profilesync.model import Connection
from profilesync.secrets import declare_secret_fields, scrub
from profilesync.warehouses.protocol import Warehouse
from profilesync.warehouses.spec import ConfigSpec

#: kind -> "module:Class"; drivers load lazily so a missing extra only hurts its own kind
KINDS: dict[str, str] = {
    "delta": "profilesync.warehouses.delta.warehouse:DeltaWarehouse",
    "postgres": "profilesync.warehouses.postgres.warehouse:PostgresWarehouse",
    "ducklake": "profilesync.warehouses.ducklake.warehouse:DuckLakeWarehouse",
    "duckdb": "profilesync.warehouses.duckdb.warehouse:DuckDBWarehouse",
    "snowflake": "profilesync.warehouses.snowflake.warehouse:SnowflakeWarehouse",
    "databricks": "profilesync.warehouses.databricks.warehouse:DatabricksWarehouse",
}


def _unknown(kind: str) -> ConfigurationError:
    return ConfigurationError(
        f"unknown connection kind {kind!r}: choose one of {', '.join(sorted(KINDS))}"
    )


def warehouse_class(kind: str) -> Any:
    """The class of ``kind``; ConfigurationError for an unknown or unavailable kind."""
    try:
        target = KINDS[kind]
    except KeyError:
        raise _unknown(kind) from None
    module, _, name = target.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("profilesync"):
            raise ConfigurationError(
                f"connection kind {kind!r} is not available in this build"
            ) from exc
        raise


def config_spec(kind: str) -> ConfigSpec:
    """The settings of ``kind`` (fields, labels, secrets, validation); imports no driver."""
    if kind not in KINDS:
        raise _unknown(kind)
    module = importlib.import_module(f"profilesync.warehouses.{kind}.spec")
    return cast(ConfigSpec, module.SPEC)


def open_warehouse(connection: Connection, source_name: str = "") -> Warehouse:
    """Instantiate the warehouse for a connection; ``source_name`` scopes per-source state.

    Every error that leaves the warehouse has the connection's secrets blanked out: drivers
    quote connection strings (and pieces of mis-encoded passwords) in their messages, and
    those messages are shown in the CLI, the API, the UI and stored with failed runs.
    """
    with scrubbed(connection):
        warehouse = warehouse_class(connection.kind)(connection, source_name)
    return cast(Warehouse, _Scrubbing(warehouse, connection))


@contextmanager
def scrubbed(connection: Connection) -> Iterator[None]:
    """Re-raise a :class:`ProfilesyncError` with ``connection``'s secrets replaced by ``***``."""
    try:
        yield
    except ProfilesyncError as exc:
        message = str(exc)
        clean = scrub(message, connection.kind, connection.config)
        if clean != message:
            exc.args = (clean,)
        raise


class _Scrubbing:
    """A warehouse whose method calls go through :func:`scrubbed`."""

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
def opened(connection: Connection, source_name: str = "") -> Iterator[Warehouse]:
    """:func:`open_warehouse`, closed when the block ends (drivers hold network connections)."""
    warehouse = open_warehouse(connection, source_name)
    try:
        yield warehouse
    finally:
        warehouse.close()


def validate_config(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """Check a connection's settings for its kind and return them normalised."""
    return config_spec(kind).check(config)


def describe_kind(kind: str) -> dict[str, Any]:
    """A kind's form (from its spec) plus what its warehouse can do, or why it is unavailable.

    This is what the API's kind list and the UI's "Set up connection" step show.
    """
    spec = config_spec(kind)
    try:
        supports_cdc = bool(warehouse_class(kind).supports_cdc)
        available, reason = True, None
    except (ConfigurationError, ImportError) as exc:
        available, reason, supports_cdc = False, str(exc), False
    fields = [
        {
            "name": f.name,
            "label": f.label,
            "required": f.required,
            "secret": f.secret,
            "multiline": f.multiline,
            "placeholder": f.placeholder,
            "help": f.help,
        }
        for f in spec.fields
    ]
    return {
        "kind": kind,
        "label": spec.label,
        "blurb": spec.blurb,
        "available": available,
        "unavailable_reason": reason,
        "supports_cdc": supports_cdc,
        "fields": fields,
    }


def describe_kinds() -> list[dict[str, Any]]:
    """:func:`describe_kind` of every kind, in the order the UI offers them."""
    return [describe_kind(kind) for kind in KINDS]


def secret_fields(kind: str) -> tuple[str, ...]:
    """The settings ``kind`` declares secret; unknown kinds declare none."""
    try:
        return config_spec(kind).secret_names
    except ConfigurationError:
        return ()


declare_secret_fields(secret_fields)
