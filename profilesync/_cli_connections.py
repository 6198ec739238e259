"""The ``connection`` and ``config`` command groups of the CLI (see :mod:`profilesync.cli`).

Kept apart so the main CLI module stays readable; they share its store and output
helpers, imported when a command runs (``cli`` imports this module to register them).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from profilesync.errors import ConfigurationError, ProfilesyncError
from profilesync.model import Connection, check_name
from profilesync.secrets import public_config
from profilesync.sources import opened, validate_config

connection_app = typer.Typer(
    help="Warehouse connections (reusable by many sources).", no_args_is_help=True
)
config_app = typer.Typer(help="Store settings: plan and operation limit.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


@connection_app.command("add")
def connection_add(
    name: str,
    kind: Annotated[
        str,
        typer.Option("--kind", help="delta, postgres, ducklake, duckdb, snowflake or databricks."),
    ],
    path: Annotated[
        str | None,
        typer.Option("--path", help="delta: directory of Delta tables; duckdb: database file."),
    ] = None,
    dsn: Annotated[
        str | None, typer.Option("--dsn", help="postgres: libpq connection string.")
    ] = None,
    catalog: Annotated[
        str | None, typer.Option("--catalog", help="ducklake: catalog file or connection string.")
    ] = None,
    data_path: Annotated[
        str | None, typer.Option("--data-path", help="ducklake: directory of the data files.")
    ] = None,
    option: Annotated[
        list[str] | None,
        typer.Option("--option", "-o", help="Other settings as KEY=VALUE (repeatable)."),
    ] = None,
    no_check: Annotated[
        bool,
        typer.Option(
            "--no-check", help="Save without listing the warehouse's tables (it may be down now)."
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Add a warehouse connection; it is saved only once its tables could be listed."""
    from profilesync import cli

    name = check_name(name, "connection")
    given = {"path": path, "dsn": dsn, "catalog": catalog, "data_path": data_path}
    config: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    for item in option or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigurationError(f"--option {item!r} must be KEY=VALUE")
        config[key.strip().replace("-", "_")] = value
    connection = Connection(name, kind, validate_config(kind, config))
    tables: list[str] | None = None
    with cli._store() as store:
        if store.has_connection(name):
            raise ConfigurationError(f"connection {name!r} exists already: pick another name")
        if not no_check:
            tables = _reachable_tables(connection)
        store.add_connection(connection)
    if json_out:
        cli._print_json({"name": name, "kind": kind, "tables": tables})
    elif tables is None:
        cli.out.print(f"connection [bold]{name}[/] ({kind}) added without checking the warehouse")
    else:
        cli.out.print(
            f"connection [bold]{name}[/] ({kind}) added; tables: {', '.join(tables) or 'none yet'}"
        )


def _reachable_tables(connection: Connection) -> list[str]:
    """The tables ``connection`` can read, or why it cannot be saved (nothing is written)."""
    try:
        with opened(connection) as warehouse:
            return warehouse.list_tables()
    except ProfilesyncError as exc:
        raise ProfilesyncError(
            f"{exc} — the connection was not saved; fix the settings, or add --no-check to "
            "save it without trying"
        ) from exc


@connection_app.command("list")
def connection_list(json_out: JsonOpt = False) -> None:
    """List connections."""
    from profilesync import cli

    with cli._store() as store:
        conns = store.list_connections()
    docs: list[dict[str, Any]] = [
        {
            "name": c.name,
            "kind": c.kind,
            "config": public_config(c.kind, c.config),  # no secrets, passwords redacted
        }
        for c in conns
    ]
    if json_out:
        cli._print_json(docs)
    else:
        cli._table(
            "connections",
            ["name", "kind", "settings"],
            [
                [d["name"], d["kind"], ", ".join(f"{k}={v}" for k, v in d["config"].items())]
                for d in docs
            ],
        )


@connection_app.command("tables")
def connection_tables(name: str, json_out: JsonOpt = False) -> None:
    """List the tables a connection can read."""
    from profilesync import cli

    with cli._store() as store, opened(store.get_connection(name)) as warehouse:
        tables = warehouse.list_tables()
        # places the listing could not look into are said, not silently left out
        unreadable: dict[str, str] = getattr(warehouse, "unreadable_tables", dict)()
    if json_out:
        cli._print_json(tables)
    else:
        for table in tables:
            cli.out.print(table, highlight=False)
    for place, reason in sorted(unreadable.items()):
        cli.err.print(f"warning: cannot read {place}: {reason}", highlight=False, soft_wrap=True)


@connection_app.command("delete")
def connection_delete(name: str) -> None:
    """Delete a connection that no source uses."""
    from profilesync import cli

    with cli._store() as store:
        store.delete_connection(name)
    cli.out.print(f"connection {name} deleted")


# a value such as -5 is the setting's (bad) value, not an unknown option: refused with exit 1
@config_app.command("set", context_settings={"ignore_unknown_options": True})
def config_set(key: str, value: str) -> None:
    """Set `plan` (growth|enterprise) or `operations_limit` (a lower monthly limit; `default` resets)."""
    from profilesync import cli
    from profilesync.sync.quota import PLANS

    with cli._store() as store:
        if key == "plan":
            if value not in PLANS:
                raise ConfigurationError(f"plan {value!r}: choose one of {', '.join(PLANS)}")
            store.set_setting("plan", value)
        elif key == "operations_limit":
            store.set_setting("operations_limit", _operations_limit(value, store.quota().plan))
        else:
            raise ConfigurationError(f"unknown setting {key!r}: plan or operations_limit")
        quota = store.quota()
    cli.out.print(f"plan {quota.plan}, limit {quota.limit:,} operations per month")


def _operations_limit(value: str, plan: str) -> str | None:
    """``default`` (None) or a whole number from 1 to the plan's own limit, as stored."""
    from profilesync.sync.quota import PLANS

    if value == "default":
        return None
    ceiling = PLANS[plan]
    text = value.strip()
    whole = text.isascii() and text.isdigit() and len(text.lstrip("0")) <= 12
    if not whole or not 1 <= int(text) <= ceiling:
        shown = value if len(value) <= 30 else value[:27] + "..."
        raise ConfigurationError(
            f"operations_limit {shown!r} is not valid: give a whole number of operations from 1 "
            f"to {ceiling:,} (the {plan} plan's limit), or `default`"
        )
    return str(int(text))


@config_app.command("get")
def config_get(json_out: JsonOpt = False) -> None:
    """Show the plan and limit."""
    from profilesync import cli

    with cli._store() as store:
        quota = store.quota()
    doc = {"plan": quota.plan, "operations_limit": quota.limit, "home": str(cli._state["home"])}
    if json_out:
        cli._print_json(doc)
    else:
        for k, v in doc.items():
            cli.out.print(f"{k}: {v}")
