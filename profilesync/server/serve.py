"""``profilesync serve``: set up the login on first start, then run the app with uvicorn.

While it runs, ``<home>/server.json`` names this process and its URL, so other
``profilesync`` commands on the same home refuse with a message pointing here instead of
waiting for the store file.
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import sys
from pathlib import Path

from rich.console import Console

from profilesync.errors import ConfigurationError
from profilesync.server import describe, remove_server_file, running_server, write_server_file
from profilesync.server.auth import Credentials

PASSWORD_ENV = "PROFILESYNC_ADMIN_PASSWORD"


def admin_password(password_file: Path | None, *, interactive: bool) -> str | None:
    """The UI password asked for: a file, the environment, a prompt, or None (generate one)."""
    if password_file is not None:
        try:
            return password_file.read_text().strip()
        except OSError as exc:
            raise ConfigurationError(f"cannot read --admin-password-file: {exc}") from None
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    if interactive:
        import typer

        value: str = typer.prompt(
            "Choose a password for the web UI (user admin)",
            hide_input=True,
            confirmation_prompt=True,
        )
        return value
    return None


def check_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        # as uvicorn binds: connections of a server stopped a moment ago, waiting out
        # TIME_WAIT, do not make the port busy (a listening socket still does)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigurationError(
                f"cannot listen on {host}:{port} ({exc.strerror}): choose another with --port"
            ) from None


def serve(
    home: Path,
    host: str,
    port: int,
    *,
    password_file: Path | None,
    new_token: bool,
    tick_seconds: float,
    console: Console,
    log_format: str = "text",
) -> None:
    """Run API, UI and scheduler on ``home`` until interrupted; logs on stderr in
    ``log_format`` (text or json, see :mod:`profilesync.server.logs`)."""
    import uvicorn

    from profilesync.server import logs
    from profilesync.server.app import create_app

    logs.check_format(log_format)

    home = Path(home)
    other = running_server(home)
    if other:
        raise ConfigurationError(
            f"{describe(other)} already serves {home}: open it or stop it first"
        )
    check_port(host, port)
    app = create_app(home, tick_seconds=tick_seconds)
    store = app.state.store
    with app.state.store_lock:
        asked = None
        if password_file or os.environ.get(PASSWORD_ENV) or app.state.auth.password_hash is None:
            asked = admin_password(password_file, interactive=sys.stdin.isatty())
        made = app.state.auth.bootstrap(store, password=asked, new_token=new_token)
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    _announce(console, url, made)
    write_server_file(home, url)
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal with the
    # previous handler: make that an ordinary exit, so server.json is always removed
    previous = signal.signal(signal.SIGTERM, _exit_quietly)
    logs.configure(log_format)
    app.state.scheduler.sync = logs.logging_syncs(app.state.scheduler.sync)
    config = uvicorn.Config(
        logs.AccessLog(app), host=host, port=port, log_config=None, access_log=False
    )
    try:
        uvicorn.Server(config).run()
    except (KeyboardInterrupt, _Stopped):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        remove_server_file(home)
    console.print("profilesync serve stopped")


class _Stopped(Exception):
    """SIGTERM after uvicorn's graceful shutdown."""


def _exit_quietly(signum: int, frame: object) -> None:
    raise _Stopped()


def _announce(console: Console, url: str, made: Credentials) -> None:
    token, password = made.token, made.password
    say = functools.partial(console.print, soft_wrap=True, highlight=False)  # never wrap a token
    say(f"[bold]profilesync[/] serving on {url}  (API docs: {url}/docs)")
    if token:
        say(f"admin API token (shown once, stored hashed): [bold]{token}[/]")
        say(f'  use it as: curl -H "Authorization: Bearer {token}" {url}/api/sources')
    if password:
        say(
            f"web UI login (shown once, stored hashed): user [bold]admin[/], password [bold]{password}[/]"
        )
