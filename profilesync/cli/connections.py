"""The ``connection`` and ``config`` command groups."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.markup import escape

from profilesync.app import connections, settings
from profilesync.cli._shared import JsonOpt, err, out, print_json, state, store, table
from profilesync.errors import ConfigurationError, ProfilesyncError

#: ``connection edit --secret KEY`` reads ``PROFILESYNC_SECRET_<KEY>`` before asking
SECRET_ENV = "PROFILESYNC_SECRET_"

connection_app = typer.Typer(
    help="Warehouse connections (reusable by many sources).", no_args_is_help=True
)
config_app = typer.Typer(
    help="Store settings: plan, operation limit and a sync's memory limit.", no_args_is_help=True
)


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
        typer.Option(
            "--option",
            "-o",
            help="Other settings as KEY=VALUE (repeatable); `connection kinds` lists each kind's.",
        ),
    ] = None,
    save_anyway: Annotated[
        bool,
        typer.Option(
            "--save-anyway",
            "--no-check",
            help="Save without trying the warehouse (it is down on purpose). "
            "--no-check is its old name.",
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Add a warehouse connection; it is saved only once its tables could be listed."""
    given = dict(zip(_OWN_FLAGS, (path, dsn, catalog, data_path), strict=True))
    config: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    config.update(_pairs(option, "--option"))
    with said(), store() as opened:
        connection, tables = connections.add_connection(
            opened, name, kind, config, save_anyway=save_anyway
        )
    _print_saved(connection.name, kind, "added", tables, json_out)


def _print_saved(name: str, kind: str, verb: str, tables: list[str] | None, as_json: bool) -> None:
    if as_json:
        print_json({"name": name, "kind": kind, "tables": tables})
    elif tables is None:
        out.print(f"connection [bold]{name}[/] ({kind}) {verb} without trying the warehouse")
    else:
        listed = escape(", ".join(tables))
        out.print(f"connection [bold]{name}[/] ({kind}) {verb}; tables: {listed}")


def _pairs(items: list[str] | None, flag: str) -> dict[str, str]:
    """``KEY=VALUE`` options as settings (``data-path`` written ``data_path``)."""
    pairs: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigurationError(f"{flag} {item!r} must be KEY=VALUE")
        pairs[key.strip().replace("-", "_")] = value
    return pairs


@contextmanager
def said() -> Iterator[None]:
    """A refusal printed as its words: a pip line's ``profilesync[snowflake]`` is not markup."""
    try:
        yield
    except ProfilesyncError as exc:
        if state["debug"]:
            raise
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


@connection_app.command("edit")
def connection_edit(
    name: str,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="A setting as KEY=VALUE (repeatable); KEY= removes it."),
    ] = None,
    secret: Annotated[
        list[str] | None,
        typer.Option(
            "--secret",
            help=f"A secret setting to change (repeatable): read from {SECRET_ENV}<KEY> "
            "when set, else asked for without echo.",
        ),
    ] = None,
    unset: Annotated[
        list[str] | None, typer.Option("--unset", help="A setting (or secret) to remove.")
    ] = None,
    save_anyway: Annotated[
        bool, typer.Option("--save-anyway", help="Save without trying the warehouse.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Change a connection's settings or secrets; saved only once the warehouse answers."""
    changes: dict[str, Any] = _pairs(set_, "--set")
    for key in secret or []:
        changes[key.strip().replace("-", "_")] = _secret_value(name, key)
    with said(), store() as opened:
        connection, tables = connections.edit_connection(
            opened, name, changes, unset=unset or [], save_anyway=save_anyway
        )
    _print_saved(connection.name, connection.kind, "changed", tables, json_out)


def _secret_value(connection: str, key: str) -> str:
    env = SECRET_ENV + key.strip().replace("-", "_").upper()
    if os.environ.get(env):
        return os.environ[env]
    value = str(typer.prompt(f"{key} of connection {connection}", hide_input=True, default=""))
    if not value.strip():
        raise ConfigurationError(f"no value given for {key}: type it, or set {env}")
    return value


@connection_app.command("test")
def connection_test(name: str, json_out: JsonOpt = False) -> None:
    """Try a saved connection: open the warehouse and list its tables (exit 1 when it fails)."""
    with said(), store() as opened:
        result = connections.connection_test(opened, name)
    if json_out:
        print_json(result.to_json())
    elif result.ok:
        out.print(f"connection [bold]{name}[/]: {escape(result.message)}")
    else:
        err.print(f"[red]error:[/] {escape(result.message)}", highlight=False, soft_wrap=True)
    if not result.ok:
        raise typer.Exit(1)


@connection_app.command("kinds")
def connection_kinds(json_out: JsonOpt = False) -> None:
    """The settings each warehouse kind takes (from its config spec), and which are secret."""
    kinds = connections.kinds()
    if json_out:
        print_json(kinds)
        return
    for kind in kinds:
        state_note = "" if kind["available"] else f"  (unavailable: {kind['unavailable_reason']})"
        out.print(f"[bold]{kind['kind']}[/] — {kind['label']}{state_note}", highlight=False)
        for field in kind["fields"]:
            flag = _flag(field["name"])
            notes = [
                w for w, on in (("required", field["required"]), ("secret", field["secret"])) if on
            ]
            extra = f" ({', '.join(notes)})" if notes else ""
            out.print(
                f"  {flag}{extra}: {field['help'] or field['label']}",
                highlight=False,
                soft_wrap=True,
            )


def _flag(name: str) -> str:
    """How a setting is given on the command line: its own flag, or ``-o name=VALUE``."""
    dashed = name.replace("_", "-")
    return f"--{dashed}" if name in _OWN_FLAGS else f"-o {name}=VALUE"


#: settings with a flag of their own on ``connection add``; the others go through ``-o``
_OWN_FLAGS = ("path", "dsn", "catalog", "data_path")


@connection_app.command("list")
def connection_list(json_out: JsonOpt = False) -> None:
    """List connections."""
    with store() as opened:
        docs = [connections.public_doc(c) for c in connections.list_connections(opened)]
    if json_out:
        print_json(docs)
    else:
        table(
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
    with store() as opened:
        tables, unreadable = connections.tables(opened, name)
    if json_out:
        print_json(tables)
    else:
        for found in tables:
            out.print(found, highlight=False)
    for place, reason in sorted(unreadable.items()):
        err.print(f"warning: cannot read {place}: {reason}", highlight=False, soft_wrap=True)


@connection_app.command("delete")
def connection_delete(name: str) -> None:
    """Delete a connection that no source uses."""
    with store() as opened:
        connections.delete_connection(opened, name)
    out.print(f"connection {name} deleted")


# a value such as -5 is the setting's (bad) value, not an unknown option: refused with exit 1
@config_app.command("set", context_settings={"ignore_unknown_options": True})
def config_set(key: str, value: str) -> None:
    """Set `plan` (growth|enterprise), `operations_limit` (a lower monthly limit) or
    `sync_memory_limit` (e.g. 512MB, 1GB: a sync spills to disk past it); `default` resets."""
    with store() as opened:
        quota = settings.set_setting(opened, key, value)
        limit = settings.sync_memory_limit(opened)
    if key == settings.MEMORY_LIMIT_SETTING:
        out.print(f"sync memory limit {_size(limit)}")
    else:
        out.print(f"plan {quota.plan}, limit {quota.limit:,} operations per month")


@config_app.command("get")
def config_get(json_out: JsonOpt = False) -> None:
    """Show the plan and limit."""
    with store() as opened:
        quota = settings.quota(opened)
        limit = settings.sync_memory_limit(opened)
    doc = {
        "plan": quota.plan,
        "operations_limit": quota.limit,
        settings.MEMORY_LIMIT_SETTING: limit,
        "home": str(state["home"]),
    }
    if json_out:
        print_json(doc)
    else:
        for k, v in doc.items():
            out.print(f"{k}: {v}")


def _size(count: int) -> str:
    """Bytes as the largest whole unit they are a multiple of: ``1000000000`` -> ``1GB``."""
    for unit, factor in (("TB", 1000**4), ("GB", 1000**3), ("MB", 1000**2)):
        if count % factor == 0:
            return f"{count // factor}{unit}"
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if count % factor == 0:
            return f"{count // factor}{unit}"
    return f"{count:,} bytes"
