"""The ``profilesync`` command line: parse, call the use cases in :mod:`profilesync.app`, print.

One module per command group; they share :mod:`profilesync.cli._shared` (consoles, home,
store, printers) and never import this package back.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.markup import escape

from profilesync.app import explain_store_error
from profilesync.app.home import STORE_ENV, check_backend_name
from profilesync.cli._shared import err, home, out, state
from profilesync.cli.alerts import alert_app
from profilesync.cli.connections import config_app, connection_app
from profilesync.cli.demo import demo_cmd
from profilesync.cli.events import events_app
from profilesync.cli.profiles import profile_app, usage_cmd
from profilesync.cli.query import query_app
from profilesync.cli.sources import source_app
from profilesync.cli.sync import runs_cmd, sync_cmd
from profilesync.cli.users import audit_cmd, record_cli_change, token_app, user_app
from profilesync.errors import InternalError, ProfilesyncError

__all__ = ["app", "main"]

app = typer.Typer(
    help="Keep a profile store in sync with warehouse user tables by change data capture.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(connection_app, name="connection")
app.add_typer(source_app, name="source")
app.add_typer(profile_app, name="profile")
app.add_typer(config_app, name="config")
app.add_typer(events_app, name="events")
app.add_typer(query_app, name="query")
app.add_typer(alert_app, name="alert")
app.command("sync")(sync_cmd)
app.command("runs")(runs_cmd)
app.command("usage")(usage_cmd)
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")
app.command("audit")(audit_cmd)


@app.callback()
def _main(
    home: Annotated[
        Path | None,
        typer.Option(
            "--home", help="State directory [env PROFILESYNC_HOME; default ./.profilesync]."
        ),
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            envvar=STORE_ENV,
            show_envvar=False,
            help="Where profiles and events are kept: duckdb (the default), chdb (ClickHouse "
            "in this process, under the home) or clickhouse://user@host:8123/database "
            "(?cluster=NAME). Needed only when the home is made: it keeps its backend "
            f"[env {STORE_ENV}].",
        ),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    state["home"] = home or Path(os.environ.get("PROFILESYNC_HOME", ".profilesync"))
    state["debug"] = debug
    state["store"] = check_backend_name(store) if store else None
    state["pinned"] = False


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
    log_format: Annotated[
        str,
        typer.Option(
            "--log-format",
            help="Logs on stderr as text lines, or json: one object per line (ts, level, "
            "logger, message and fields).",
        ),
    ] = "text",
) -> None:
    """Run the web UI, the REST API and the scheduler on this home."""
    from profilesync.server.serve import serve

    serve(
        home(),
        host,
        port,
        password_file=admin_password_file,
        new_token=new_token,
        tick_seconds=tick,
        console=out,
        log_format=log_format,
    )


app.command("demo")(demo_cmd)


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
        _audit(sys.argv[1:])
    except ProfilesyncError as exc:
        _fail(_explained(exc))
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.TyperException as exc:  # usage errors of typer's own click: its usage text
        _usage_error(exc)
    except typer.Abort:
        sys.exit(1)
    except Exception as exc:
        if (known := explain_store_error(exc, state["home"])) is not None:
            _fail(known)  # a full disk, a read-only home, a corrupted store: not a bug
        if state["debug"]:
            raise
        err.print(
            f"[red]error:[/] unexpected {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(2)


def _audit(args: list[str]) -> None:
    """After a command succeeded: the audit log notes it if it changed something."""
    command: Any = typer.main.get_command(app)
    ctx = command.make_context("profilesync", list(args), resilient_parsing=True)
    words: list[str] = []
    while hasattr(command, "resolve_command"):  # a group: one more word
        name, sub, rest = command.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
        if sub is None or name is None:
            return
        words.append(name)
        command, ctx = sub, sub.make_context(name, rest, parent=ctx, resilient_parsing=True)
    record_cli_change(tuple(words), dict(ctx.params))


def _explained(exc: ProfilesyncError) -> ProfilesyncError:
    """A sync that failed "unexpectedly" because of the disk or the store file says so."""
    if isinstance(exc, InternalError) and exc.__cause__ is not None:
        return explain_store_error(exc.__cause__, state["home"]) or exc
    return exc


def _fail(exc: ProfilesyncError) -> NoReturn:
    if state["debug"]:
        raise exc
    err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    sys.exit(1)


def _usage_error(exc: typer.TyperException) -> NoReturn:
    """Print what click prints for a usage error (usage line, hint, ``Error: ...``)."""
    show = getattr(exc, "show", None)
    if callable(show):
        show()
    else:
        err.print(f"Error: {exc.format_message()}", highlight=False, soft_wrap=True)
    sys.exit(int(getattr(exc, "exit_code", 2)))
