"""The ``profilesync`` command line: parse, call the library, print. Nothing else lives here."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from profilesync._cli_connections import config_app, connection_app
from profilesync._cli_sources import source_app
from profilesync.errors import ConfigurationError, InternalError, ProfilesyncError
from profilesync.events.cli import events_app, query_app
from profilesync.store.duckdb import DuckDBStore
from profilesync.store.home import store_error
from profilesync.sync import engine

app = typer.Typer(
    help="Keep a profile store in sync with warehouse user tables by change data capture.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
profile_app = typer.Typer(help="Look up and export profiles.", no_args_is_help=True)
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
    """Entry point: exit 0, 1 with `error: <cause and fix>`, 2 for a usage error, 2 for a bug.

    Every file the process creates is private to the user (umask 077): the home holds
    profiles, the token hash and encrypted secrets, and DuckDB creates its WAL later.
    """
    os.umask(os.umask(0o077) | 0o077)
    try:
        # without standalone mode click returns a typer.Exit's code instead of exiting
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except ProfilesyncError as exc:
        _fail(_explained(exc))
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.TyperException as exc:  # usage errors of typer's own click: its usage text
        _usage_error(exc)
    except typer.Abort:
        sys.exit(1)
    except Exception as exc:
        if (known := store_error(exc, _state["home"])) is not None:
            _fail(known)  # a full disk, a read-only home, a corrupted store: not a bug
        if _state["debug"]:
            raise
        err.print(
            f"[red]error:[/] unexpected {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(2)


def _explained(exc: ProfilesyncError) -> ProfilesyncError:
    """A sync that failed "unexpectedly" because of the disk or the store file says so."""
    if isinstance(exc, InternalError) and exc.__cause__ is not None:
        return store_error(exc.__cause__, _state["home"]) or exc
    return exc


def _fail(exc: ProfilesyncError) -> NoReturn:
    if _state["debug"]:
        raise exc
    err.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
    sys.exit(1)


def _usage_error(exc: typer.TyperException) -> NoReturn:
    """Print what click prints for a usage error (usage line, hint, ``Error: ...``)."""
    show = getattr(exc, "show", None)
    if callable(show):
        show()
    else:
        err.print(f"Error: {exc.format_message()}", highlight=False, soft_wrap=True)
    sys.exit(int(getattr(exc, "exit_code", 2)))


if __name__ == "__main__":
    main()
