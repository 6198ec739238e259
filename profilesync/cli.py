"""The ``profilesync`` command line: parse, call the library, print. Nothing else lives here."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from profilesync.errors import ConfigurationError, ProfilesyncError
from profilesync.events.cli import events_app, query_app
from profilesync.mapping import parse_property
from profilesync.model import Connection, Source, format_frequency, parse_frequency
from profilesync.secrets import public_config
from profilesync.sources import open_source, opened, validate_config
from profilesync.store.duckdb import DuckDBStore
from profilesync.sync import engine

app = typer.Typer(
    help="Keep a profile store in sync with warehouse user tables by change data capture.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
connection_app = typer.Typer(
    help="Warehouse connections (reusable by many sources).", no_args_is_help=True
)
source_app = typer.Typer(
    help="Sources: a table or query mapped to profile properties.", no_args_is_help=True
)
profile_app = typer.Typer(help="Look up and export profiles.", no_args_is_help=True)
config_app = typer.Typer(help="Store settings: plan and operation limit.", no_args_is_help=True)
app.add_typer(connection_app, name="connection")
app.add_typer(source_app, name="source")
app.add_typer(profile_app, name="profile")
app.add_typer(config_app, name="config")
app.add_typer(events_app, name="events")
app.add_typer(query_app, name="query")

out = Console()
err = Console(stderr=True)
_state: dict[str, Any] = {"home": None, "debug": False}

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


@app.callback()
def _main(
    home: Annotated[
        Path | None,
        typer.Option(
            "--home", help="State directory [env PROFILESYNC_HOME; default ./.profilesync]."
        ),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    _state["home"] = home or Path(os.environ.get("PROFILESYNC_HOME", ".profilesync"))
    _state["debug"] = debug


@contextmanager
def _store() -> Iterator[DuckDBStore]:
    store = DuckDBStore(_state["home"])
    try:
        yield store
    finally:
        store.close()


def _print_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")


def _table(title: str | None, columns: list[str], rows: list[list[Any]]) -> None:
    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    out.print(table)


# -- connections ------------------------------------------------------------------------


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
    json_out: JsonOpt = False,
) -> None:
    """Add a warehouse connection."""
    given = {"path": path, "dsn": dsn, "catalog": catalog, "data_path": data_path}
    config: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    for item in option or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigurationError(f"--option {item!r} must be KEY=VALUE")
        config[key.strip().replace("-", "_")] = value
    config = validate_config(kind, config)
    with _store() as store:
        store.add_connection(Connection(name, kind, config))
        with opened(store.get_connection(name)) as warehouse:
            tables = warehouse.list_tables()
    if json_out:
        _print_json({"name": name, "kind": kind, "tables": tables})
    else:
        out.print(
            f"connection [bold]{name}[/] ({kind}) added; tables: {', '.join(tables) or 'none yet'}"
        )


@connection_app.command("list")
def connection_list(json_out: JsonOpt = False) -> None:
    """List connections."""
    with _store() as store:
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
        _print_json(docs)
    else:
        _table(
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
    with _store() as store, opened(store.get_connection(name)) as warehouse:
        tables = warehouse.list_tables()
    if json_out:
        _print_json(tables)
    else:
        for table in tables:
            out.print(table)


@connection_app.command("delete")
def connection_delete(name: str) -> None:
    """Delete a connection that no source uses."""
    with _store() as store:
        store.delete_connection(name)
    out.print(f"connection {name} deleted")


# -- sources ----------------------------------------------------------------------------


@source_app.command("add")
def source_add(
    name: str,
    connection: Annotated[str, typer.Option("--connection", help="Connection name.")],
    table: Annotated[str | None, typer.Option("--table", help="Table, named schema.table.")] = None,
    query: Annotated[
        str | None,
        typer.Option("--query", help='SELECT col AS "user_id", col AS "Name" FROM t [WHERE ...].'),
    ] = None,
    user_id: Annotated[
        str | None, typer.Option("--user-id", help="Column holding the user id (with --table).")
    ] = None,
    prop: Annotated[
        list[str] | None, typer.Option("--property", help="COLUMN[=Display Name] (repeatable).")
    ] = None,
    frequency: Annotated[
        str, typer.Option("--frequency", help="How often to sync: 30m, 1h, 12h, 1d.")
    ] = "12h",
    strategy: Annotated[
        str, typer.Option("--strategy", help="cdc (change data capture) or diff (snapshot diff).")
    ] = "cdc",
    no_check: Annotated[
        bool, typer.Option("--no-check", help="Save even if Test mapping fails.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Add a source: a table (or a profile SELECT) mapped to profile properties."""
    if strategy not in ("cdc", "diff"):
        raise ConfigurationError(f"--strategy {strategy!r}: choose cdc or diff")
    seconds = parse_frequency(frequency)
    with _store() as store, opened(store.get_connection(connection), name) as warehouse:
        mapping = engine.resolve_mapping(
            warehouse,
            table=table,
            query=query,
            user_id=user_id,
            properties=[parse_property(p) for p in prop or []],
            strategy=strategy,
        )
        source = Source(
            name=name,
            connection=connection,
            mapping=mapping,
            strategy=strategy,  # type: ignore[arg-type]
            frequency_seconds=seconds,
        )
        store.check_property_names(name, mapping)
        checks = [] if no_check else engine.source_checks(warehouse, source)
        if failed := engine.failures(checks):
            raise ConfigurationError(
                "Test mapping failed, the source was not saved (--no-check saves it anyway):\n  - "
                + "\n  - ".join(failed)
            )
        saved = store.add_source(source)
    if json_out:
        _print_json(_source_doc(saved))
    else:
        for check in checks:
            _print_check(check.to_json())
        out.print(
            f"source [bold]{name}[/] added: {mapping.table} -> {', '.join(mapping.property_names) or 'no properties'}; "
            f"every {format_frequency(seconds)} by {strategy}. Run `profilesync sync {name}`."
        )


def _source_doc(source: Source) -> dict[str, Any]:
    return {
        "name": source.name,
        "connection": source.connection,
        "table": source.mapping.table,
        "query": source.mapping.query,
        "user_id": source.mapping.user_id,
        "properties": [
            {"name": p.name, "expression": p.expression} for p in source.mapping.properties
        ],
        "strategy": source.strategy,
        "frequency": format_frequency(source.frequency_seconds),
        "paused": source.paused,
        "checkpoint": source.checkpoint.to_json() if source.checkpoint else None,
    }


@source_app.command("list")
def source_list(json_out: JsonOpt = False) -> None:
    """List sources with their checkpoint and last run."""
    with _store() as store:
        docs = []
        for source in store.list_sources():
            doc = _source_doc(source)
            runs = store.runs(source.name, limit=1)
            doc["last_run"] = runs[0] if runs else None
            docs.append(doc)
    if json_out:
        _print_json(docs)
        return
    _table(
        "sources",
        [
            "name",
            "connection",
            "table",
            "properties",
            "strategy",
            "frequency",
            "checkpoint",
            "last run",
        ],
        [
            [
                d["name"],
                d["connection"],
                d["table"],
                ", ".join(p["name"] for p in d["properties"]),
                d["strategy"],
                d["frequency"],
                d["checkpoint"]["position"] if d["checkpoint"] else "-",
                f"{d['last_run']['status']} {d['last_run']['finished_at']}"
                if d["last_run"]
                else "never",
            ]
            for d in docs
        ],
    )


@source_app.command("delete")
def source_delete(
    name: str,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Delete even if the warehouse cannot be reached to free what the source holds there "
            "(a Postgres replication slot then stays on the server: drop it by hand).",
        ),
    ] = False,
) -> None:
    """Delete a source and every property it gave to profiles (and its Postgres slot)."""
    with _store() as store:
        source = store.get_source(name)
        warehouse = open_source(store.get_connection(source.connection), name)
        try:
            warehouse.release(source.mapping)
        except ProfilesyncError as exc:
            if not force:
                raise ProfilesyncError(
                    f"{exc} — the source was not deleted; fix the connection, or add --force "
                    "to delete it anyway and free the warehouse side by hand"
                ) from exc
            err.print(f"[yellow]warning:[/] {exc}", highlight=False, soft_wrap=True)
        finally:
            warehouse.close()
        store.delete_source(name)
    out.print(f"source {name} deleted with its properties")


@source_app.command("test")
def source_test(name: str, json_out: JsonOpt = False) -> None:
    """Test mapping: change tracking, retention, a preview and the rows that would be rejected."""
    with _store() as store:
        report = engine.test_mapping(store, store.get_source(name))
    if json_out:
        _print_json(report)
    else:
        for check in report["checks"]:
            _print_check(check)
        if report["preview"]:
            cols = list(report["preview"][0])
            _table(
                f"preview ({report['sampled_rows']} rows read)",
                cols,
                [[r.get(c) for c in cols] for r in report["preview"]],
            )
        if report["rejected"]:
            _table(
                f"{report['rejected']} row(s) would be rejected",
                ["reason", "row"],
                [[r["reason"], json.dumps(r["row"], default=str)] for r in report["rejected_rows"]],
            )
        out.print("[green]mapping OK[/]" if report["ok"] else "[red]mapping has failures[/]")
    if not report["ok"]:
        raise typer.Exit(1)


def _print_check(check: dict[str, Any]) -> None:
    style = {"pass": "green", "warn": "yellow", "fail": "red", "info": "blue"}[check["level"]]
    out.print(f"[{style}]{check['level']:>4}[/] {check['name']}: {check['message']}")
    if check.get("fix_sql"):
        out.print(f"      run: [bold]{check['fix_sql']}[/]")


# -- syncing ----------------------------------------------------------------------------


@app.command("sync")
def sync_cmd(
    name: str,
    resync: Annotated[
        bool,
        typer.Option(
            "--resync",
            help="Diff the current snapshot against the store (after a replace or expired history).",
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Run one sync of a source now."""
    with engine.source_lock(_state["home"], name), _store() as store:
        if json_out or not out.is_terminal:
            result = engine.sync(store, name, resync=resync, locked=True)
        else:
            with Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.completed:,} rows"),
                TimeElapsedColumn(),
                console=out,
                transient=True,
            ) as bar:
                task = bar.add_task(f"sync {name}", total=None)
                result = engine.sync(
                    store,
                    name,
                    resync=resync,
                    locked=True,
                    progress=lambda stage, rows: bar.update(
                        task, completed=rows, description=f"sync {name}: {stage}"
                    ),
                )
    doc = result.to_json()
    if json_out:
        _print_json(doc)
    else:
        out.print(
            f"[green]synced[/] {name} ({doc['mode']}): {doc['inserted']:,} inserted, {doc['updated']:,} updated, "
            f"{doc['deleted']:,} deleted, {doc['rejected']:,} rejected; {doc['operations']:,} operations; "
            f"checkpoint {doc['checkpoint']}"
        )


@app.command("runs")
def runs_cmd(
    name: str,
    limit: Annotated[int, typer.Option(help="How many runs.")] = 20,
    json_out: JsonOpt = False,
) -> None:
    """Run history of a source, with rejected rows and their reasons."""
    with _store() as store:
        store.get_source(name)
        runs = store.runs(name, limit)
        for run in runs:
            run["rejected_rows"] = store.rejected_rows(run["id"]) if run["rejected"] else []
    if json_out:
        _print_json(runs)
        return
    _table(
        f"runs of {name}",
        [
            "id",
            "status",
            "mode",
            "ins",
            "upd",
            "del",
            "rejected",
            "ops",
            "checkpoint",
            "finished",
            "error",
        ],
        [
            [
                r["id"],
                r["status"],
                r["mode"],
                r["inserted"],
                r["updated"],
                r["deleted"],
                r["rejected"],
                r["operations"],
                r["checkpoint"],
                r["finished_at"],
                r["error"],
            ]
            for r in runs
        ],
    )
    for run in runs:
        for rej in run["rejected_rows"]:
            out.print(
                f"  run {run['id']} rejected: {rej['reason']}  {json.dumps(rej['row'], default=str)}"
            )


# -- profiles and usage -----------------------------------------------------------------


@profile_app.command("get")
def profile_get(user_id: str, json_out: JsonOpt = False) -> None:
    """Show one profile."""
    with _store() as store:
        profile = store.get_profile(user_id)
    if json_out:
        _print_json(profile)
    else:
        _table(
            f"profile {user_id}",
            ["property", "value"],
            [[k, json.dumps(v)] for k, v in profile["properties"].items()],
        )


@profile_app.command("export")
def profile_export() -> None:
    """Every profile, one JSON object per line."""
    with _store() as store:
        for profile in store.export_profiles():
            sys.stdout.write(json.dumps(profile) + "\n")


@app.command("usage")
def usage_cmd(json_out: JsonOpt = False) -> None:
    """Operations this month per source, against the plan's limit."""
    with _store() as store:
        usage = store.usage()
    if json_out:
        _print_json(usage)
        return
    out.print(
        f"{usage['month']}: {usage['used']:,} of {usage['limit']:,} operations ({usage['plan']} plan)"
    )
    _table(
        None,
        ["source", "operations"],
        [[s["source"], f"{s['operations']:,}"] for s in usage["sources"]],
    )


@config_app.command("set")
def config_set(key: str, value: str) -> None:
    """Set `plan` (growth|enterprise) or `operations_limit` (a lower monthly limit; `default` resets)."""
    from profilesync.sync.quota import PLANS

    with _store() as store:
        if key == "plan":
            if value not in PLANS:
                raise ConfigurationError(f"plan {value!r}: choose one of {', '.join(PLANS)}")
            store.set_setting("plan", value)
        elif key == "operations_limit":
            if value != "default" and not value.isdigit():
                raise ConfigurationError(
                    "operations_limit must be a whole number of operations, or `default`"
                )
            store.set_setting("operations_limit", None if value == "default" else value)
        else:
            raise ConfigurationError(f"unknown setting {key!r}: plan or operations_limit")
        quota = store.quota()
    out.print(f"plan {quota.plan}, limit {quota.limit:,} operations per month")


@config_app.command("get")
def config_get(json_out: JsonOpt = False) -> None:
    """Show the plan and limit."""
    with _store() as store:
        quota = store.quota()
    doc = {"plan": quota.plan, "operations_limit": quota.limit, "home": str(_state["home"])}
    if json_out:
        _print_json(doc)
    else:
        for k, v in doc.items():
            out.print(f"{k}: {v}")


@app.command("serve")
def serve_cmd(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    admin_password_file: Annotated[
        Path | None,
        typer.Option(
            "--admin-password-file",
            help="File holding the web UI password for user admin [env PROFILESYNC_ADMIN_PASSWORD; "
            "else asked for, or generated and printed once].",
        ),
    ] = None,
    new_token: Annotated[
        bool, typer.Option("--new-token", help="Replace the admin API token (printed once).")
    ] = False,
    tick: Annotated[
        float, typer.Option("--tick", help="Seconds between scheduler checks.", hidden=True)
    ] = 15.0,
) -> None:
    """Run the web UI, the REST API and the scheduler on this home."""
    from profilesync.server.serve import serve

    serve(
        _state["home"],
        host,
        port,
        password_file=admin_password_file,
        new_token=new_token,
        tick_seconds=tick,
        console=out,
    )


@app.command("demo")
def demo_cmd(
    directory: Annotated[
        Path,
        typer.Option("--dir", help="Where the demo warehouse and home go (replaced if present)."),
    ] = Path("profilesync-demo"),
    warehouse: Annotated[
        str,
        typer.Option(
            "--warehouse",
            help="delta (Delta Lake tables) or postgres (starts a throwaway local PostgreSQL 15).",
        ),
    ] = "delta",
) -> None:
    """Build a small warehouse, sync it, change it, sync again and show what changed."""
    if warehouse == "postgres":
        from profilesync.demo_postgres import run_demo as run_postgres_demo

        run_postgres_demo(directory, out)
        return
    if warehouse != "delta":
        raise ConfigurationError(f"--warehouse {warehouse!r}: choose delta or postgres")
    from profilesync.demo import run_demo

    run_demo(directory, out)


def main() -> None:
    """Entry point: ProfilesyncError becomes `error: ...` on stderr and exit code 1."""
    try:
        # without standalone mode click returns a typer.Exit's code instead of exiting
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except ProfilesyncError as exc:
        if _state["debug"]:
            raise
        err.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        sys.exit(1)
    except Exception as exc:  # a bug, not a user error: one line unless --debug
        if _state["debug"]:
            raise
        err.print(
            f"[red]error:[/] unexpected {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(2)


if __name__ == "__main__":
    main()
