"""Connection use cases: add and edit (saved only once the warehouse answers), test, list,
delete.

A connection is tried before it is saved: the warehouse is opened and its tables listed;
when that fails, or finds no table, nothing is written and the error says what failed in
one line, ending with how the caller's surface saves it anyway (a warehouse that is down
on purpose). A connection's settings are shown through :func:`public_doc` only: secrets
are left out (which ones are set is said by :func:`connection_doc`), passwords inside
DSNs redacted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from profilesync.app._warehouses import describe_kind, describe_kinds, opened, validate_config
from profilesync.app.home import Store
from profilesync.errors import ConfigurationError, ProfilesyncError
from profilesync.model import Connection, Source, check_name
from profilesync.secrets import HIDDEN, embeds_secret, public_config, secret_fields

#: how each surface says "save it without trying" (the end of a refusal's message)
CLI_ANYWAY = "rerun with --save-anyway to save it as it is"
API_ANYWAY = 'send "save_anyway": true to save it as it is'
UI_ANYWAY = "press Save anyway to keep it as it is"
#: what a kind's warehouse with no table is told, beyond "no tables"
_EMPTY = {
    "delta": "{path} holds no Delta table (no directory under it has a _delta_log): "
    "point the connection at the directory above your tables",
    "duckdb": "{path} holds no table: point the connection at the database file with your tables",
}
#: the table list's note on a table's change tracking, where the warehouse tells it cheaply
FEED_ON = "change data feed on"
FEED_OFF = "change data feed off: snapshot diff only"
_HINTS_UP_TO = 200
_EMPTY_ANY = (
    "the warehouse answered but shows no table this connection can read: create one, or "
    "check the database and the role"
)


@dataclass(frozen=True)
class ConnectionTest:
    """What testing a connection found: whether it works, in one line, and its tables."""

    ok: bool
    message: str
    tables: list[str] = field(default_factory=list)
    code: str = "ok"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


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
    save_anyway: bool = False,
    no_check: bool = False,
    anyway_hint: str = CLI_ANYWAY,
) -> tuple[Connection, list[str] | None]:
    """Save a connection once its tables could be listed; ``save_anyway`` saves it untried.

    ``config`` is taken as given (a form's blanks are dropped by :func:`clean_config` first).
    Returns the saved connection and the tables it can read (None when not tried).
    ``anyway_hint`` is how the caller's surface says "save it without trying";
    ``no_check`` is the old name of ``save_anyway``.
    """
    connection = new_connection(store, name, kind, config)
    tables = None if save_anyway or no_check else reachable_tables(connection, anyway_hint)
    store.add_connection(connection)
    return store.get_connection(connection.name), tables


def new_connection(store: Store, name: str, kind: str, config: dict[str, Any]) -> Connection:
    """A connection checked as far as it can be without its warehouse (a free name, valid
    settings), not saved: what a form can blame on one of its fields."""
    name = check_name(name, "connection")
    connection = Connection(name, kind, validate_config(kind, config))
    if store.has_connection(name):
        raise ConfigurationError(f"connection {name!r} exists already: pick another name")
    return connection


def edit_connection(
    store: Store,
    name: str,
    changes: dict[str, Any],
    *,
    unset: Iterable[str] = (),
    replace: bool = False,
    save_anyway: bool = False,
    anyway_hint: str = CLI_ANYWAY,
) -> tuple[Connection, list[str] | None]:
    """Change a connection's settings, tried like a new one before anything is saved.

    ``changes`` are merged into the stored settings (``replace``: they are all of them, as
    a form posts them); a blank value removes a setting, except a secret's, which keeps
    its stored value. ``unset`` removes settings, secrets too. Returns the saved connection
    and its tables (None when ``save_anyway`` saved it untried).
    """
    old = store.get_connection(name)
    config = _edited(old, changes, [k.strip().replace("-", "_") for k in unset], replace)
    connection = Connection(old.name, old.kind, validate_config(old.kind, config))
    tables = None if save_anyway else reachable_tables(connection, anyway_hint, verb="changed")
    store.update_connection(connection)
    return store.get_connection(old.name), tables


def _edited(
    old: Connection, changes: dict[str, Any], unset: list[str], replace: bool
) -> dict[str, Any]:
    """The settings after ``changes``: blank secrets and redacted values sent back unchanged
    keep what is stored."""
    changes = {k.strip().replace("-", "_"): v for k, v in changes.items() if k.strip()}
    secrets = set(secret_fields(old.kind, {**old.config, **changes}))
    shown = public_config(old.kind, old.config)
    kept = old.config if not replace else {k: v for k, v in old.config.items() if k in secrets}
    config = dict(kept)
    for key, value in changes.items():
        blank = value is None or (isinstance(value, str) and not value.strip())
        if key in secrets:
            if not blank:
                config[key] = value
        elif blank:
            config.pop(key, None)
        elif key in old.config and value == shown.get(key):
            config[key] = old.config[key]  # a redacted DSN sent back as shown keeps its password
        elif isinstance(value, str) and HIDDEN in value and embeds_secret(old.config.get(key)):
            raise ConfigurationError(
                f"{key} still holds {HIDDEN} where its password was: type the password "
                "again (it is never shown), or leave the setting as it was"
            )
        else:
            config[key] = value
    for key in unset:
        config.pop(key, None)
    return config


def update_connection(store: Store, name: str, config: dict[str, Any]) -> Connection:
    """Replace the settings without trying them; a secret left out (or blank) keeps its value."""
    return edit_connection(store, name, config, replace=True, save_anyway=True)[0]


def reachable_tables(connection: Connection, anyway_hint: str, verb: str = "saved") -> list[str]:
    """The tables ``connection`` can read, or one line on why it is not ``verb``."""
    try:
        return probe(connection)
    except ProfilesyncError as exc:
        # same class (and so API status and code) as the warehouse's error, one line
        refusal = f"the connection was not {verb}; fix the settings, or {anyway_hint}"
        cause = exc.ui_message
        exc.args = (f"{_one_line(exc)} — {refusal}",)
        exc.ui_message = f"{cause.rstrip('.')} — {refusal}"
        raise


def probe(connection: Connection) -> list[str]:
    """Open the warehouse and list its tables: the warehouse's error when it cannot, a
    :class:`ConfigurationError` when it finds none."""
    with opened(connection) as warehouse:
        found = warehouse.list_tables()
        unreadable: dict[str, str] = getattr(warehouse, "unreadable_tables", dict)()
    if found:
        return found
    template = _EMPTY.get(connection.kind, _EMPTY_ANY)
    message = template.format(**connection.config)
    if unreadable:
        place, why = next(iter(unreadable.items()))
        message += f" ({len(unreadable)} place(s) could not be read, e.g. {place}: {why})"
    raise ConfigurationError(message)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def connection_test(store: Store, name: str) -> ConnectionTest:
    """Try a saved connection: open the warehouse and list its tables."""
    return try_connection(store.get_connection(name))


def try_connection(connection: Connection) -> ConnectionTest:
    """:func:`probe` as a result: never raises for what the warehouse answers (the result
    says it), and needs no store (a caller may release the store while the warehouse answers)."""
    try:
        found = probe(connection)
    except ProfilesyncError as exc:
        return ConnectionTest(False, _one_line(exc), [], exc.code)
    shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
    count = f"{len(found)} table{'' if len(found) == 1 else 's'}"
    return ConnectionTest(True, f"connected: {count} ({shown})", found)


def list_connections(store: Store) -> list[Connection]:
    return store.list_connections()


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


def table_hints(store: Store, name: str, names: list[str]) -> dict[str, str]:
    """A short note per table on its change tracking, where the warehouse can tell cheaply
    (Delta: the table's properties); empty for kinds that cannot."""
    if len(names) > _HINTS_UP_TO:
        return {}  # each hint reads a table's metadata: a long list is shown without them
    with opened(store.get_connection(name)) as warehouse:
        states = getattr(warehouse, "change_feed_states", None)
        found: dict[str, bool | None] = states(names) if states else {}
    return {table: FEED_ON if on else FEED_OFF for table, on in found.items() if on is not None}


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
