"""Connection use cases: add (after listing the warehouse's tables), list, test, change, delete.

A connection's settings are shown through :func:`public_doc` only: secrets are left out
(which ones are set is said by :func:`connection_doc`), passwords inside DSNs redacted.
"""

from __future__ import annotations

from typing import Any

from profilesync.app._warehouses import describe_kind, describe_kinds, opened, validate_config
from profilesync.app.home import Store
from profilesync.errors import ConfigurationError, ProfilesyncError
from profilesync.model import Connection, Source, check_name
from profilesync.secrets import public_config, secret_fields


def public_doc(connection: Connection) -> dict[str, Any]:
    """Name, kind and the settings that may be shown (what ``connection list --json`` prints)."""
    return {
        "name": connection.name,
        "kind": connection.kind,
        "config": public_config(connection.kind, connection.config),
    }


def connection_doc(connection: Connection, sources: list[Source] | None = None) -> dict[str, Any]:
    """:func:`public_doc` plus which secrets are set and, given ``sources``, which use it."""
    hidden = secret_fields(connection.kind, connection.config)
    doc = public_doc(connection)
    doc["secrets_set"] = sorted(k for k in hidden if connection.config.get(k) not in (None, ""))
    if sources is not None:
        doc["sources"] = [s.name for s in sources if s.connection == connection.name]
    return doc


def clean_config(config: dict[str, Any]) -> dict[str, Any]:
    """Drop empty values (a blank form field); keys written ``data_path``, not ``data-path``."""
    return {
        k.strip().replace("-", "_"): v
        for k, v in config.items()
        if k.strip() and v is not None and (not isinstance(v, str) or v.strip() != "")
    }


def add_connection(
    store: Store,
    name: str,
    kind: str,
    config: dict[str, Any],
    *,
    no_check: bool = False,
    no_check_hint: str = "add --no-check",
) -> tuple[Connection, list[str] | None]:
    """Save a connection; unless ``no_check``, only once its tables could be listed.

    ``config`` is taken as given (a form's blanks are dropped by :func:`clean_config` first).
    Returns the saved connection and the tables it can read (None when not checked).
    ``no_check_hint`` is how the caller's surface says "save it without trying".
    """
    name = check_name(name, "connection")
    connection = Connection(name, kind, validate_config(kind, config))
    if store.has_connection(name):
        raise ConfigurationError(f"connection {name!r} exists already: pick another name")
    tables = None if no_check else _reachable_tables(connection, no_check_hint)
    store.add_connection(connection)
    return store.get_connection(name), tables


def _reachable_tables(connection: Connection, no_check_hint: str) -> list[str]:
    """The tables ``connection`` can read, or why it cannot be saved (nothing is written)."""
    try:
        with opened(connection) as warehouse:
            return warehouse.list_tables()
    except ProfilesyncError as exc:
        raise ProfilesyncError(
            f"{exc} — the connection was not saved; fix the settings, or {no_check_hint} to "
            "save it without trying"
        ) from exc


def list_connections(store: Store) -> list[Connection]:
    return store.list_connections()


def update_connection(store: Store, name: str, config: dict[str, Any]) -> Connection:
    """Change settings; a secret left out (or blank) keeps its stored value."""
    old = store.get_connection(name)
    new = clean_config(config)
    for key in secret_fields(old.kind, old.config):
        if key not in new and key in old.config:
            new[key] = old.config[key]
    store.update_connection(Connection(name, old.kind, validate_config(old.kind, new)))
    return store.get_connection(name)


def delete_connection(store: Store, name: str) -> None:
    """Delete a connection that no source uses (refused otherwise)."""
    store.delete_connection(name)


def tables(store: Store, name: str) -> tuple[list[str], dict[str, str]]:
    """The tables a connection can read, and the places it could not look into, with why."""
    with opened(store.get_connection(name)) as warehouse:
        found = warehouse.list_tables()
        # places the listing could not look into are said, not silently left out
        unreadable: dict[str, str] = getattr(warehouse, "unreadable_tables", dict)()
    return found, unreadable


def test_connection(store: Store, name: str) -> list[str]:
    """Open the warehouse and list its tables: raises the warehouse's error when it cannot."""
    return tables(store, name)[0]


def table_columns(store: Store, name: str, table: str) -> list[dict[str, str]]:
    """A table's columns with their types, as the warehouse reports them."""
    with opened(store.get_connection(name)) as warehouse:
        schema = warehouse.table_schema(table)
    return [{"name": f.name, "type": str(f.type)} for f in schema]


def kinds() -> list[dict[str, Any]]:
    """Every warehouse kind's connection form (from its config spec) and capabilities,
    in the order the UI offers them."""
    return describe_kinds()


def kind(name: str) -> dict[str, Any]:
    """One kind's connection form and capabilities, or why it is unavailable here."""
    return describe_kind(name)
