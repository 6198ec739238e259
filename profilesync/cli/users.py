"""``profilesync user ...``, ``token ...`` and ``audit``: the host's operator manages who may
use ``serve``. The command line acts as an admin (whoever can run it can read the home)."""

from __future__ import annotations

import getpass
import sys
from typing import Annotated

import typer

from profilesync.app import audit as app_audit
from profilesync.app import users as app_users
from profilesync.cli._shared import JsonOpt, out, print_json, store, table
from profilesync.errors import ConfigurationError

user_app = typer.Typer(
    help="Users of the web UI and the API, and their roles.", no_args_is_help=True
)
token_app = typer.Typer(help="API tokens: each acts with its user's role.", no_args_is_help=True)

RoleOpt = Annotated[
    str, typer.Option("--role", help="admin, editor or viewer (reads everything, changes nothing).")
]


def operator() -> str:
    """Who runs the command, for the audit log: the OS user."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@user_app.command("add")
def user_add(
    name: str,
    role: RoleOpt = "viewer",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Add a user: with --password-stdin they log in at once, else an invitation code is
    printed (the link is <server URL>/login/invite/<code>)."""
    with store() as opened:
        if password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
            user = app_users.add_user(opened, name, role, password, by=operator())
            code = None
        else:
            user, code = app_users.invite(opened, name, role, by=operator())
    if json_out:
        print_json({**user.to_json(), **({"invite_code": code} if code else {})})
    elif code:
        out.print(
            f"user [bold]{user.name}[/] invited as {user.role}. Send them the link "
            f"<server URL>/login/invite/{code} (valid {app_users.INVITE_DAYS} days, shown once).",
            soft_wrap=True,
            highlight=False,
        )
    else:
        out.print(f"user [bold]{user.name}[/] added as {user.role}: they can log in now.")


@user_app.command("list")
def user_list(json_out: JsonOpt = False) -> None:
    """Users with their role and status."""
    with store() as opened:
        users = app_users.list_users(opened)
    if json_out:
        print_json([u.to_json() for u in users])
        return
    rows = [
        [u.name, u.role, u.status, u.invited_by or "-", f"{u.created_at:%Y-%m-%d}"] for u in users
    ]
    table(None, ["user", "role", "status", "invited by", "since"], rows)


@user_app.command("role")
def user_role(name: str, role: str) -> None:
    """Change a user's role (the last active admin stays an admin)."""
    with store() as opened:
        user = app_users.set_role(opened, name, role)
    out.print(f"user [bold]{user.name}[/] is now {user.role}.")


@user_app.command("disable")
def user_disable(name: str) -> None:
    """Disable a user: their sessions and API tokens stop working at once."""
    with store() as opened:
        user = app_users.set_disabled(opened, name, True)
    out.print(f"user [bold]{user.name}[/] disabled: their sessions and tokens no longer work.")


@user_app.command("enable")
def user_enable(name: str) -> None:
    """Enable a disabled user again (with the tokens they had)."""
    with store() as opened:
        user = app_users.set_disabled(opened, name, False)
    out.print(f"user [bold]{user.name}[/] enabled.")


@token_app.command("create")
def token_create(
    label: str,
    user: Annotated[str, typer.Option("--user", help="Whose token it is.")] = app_users.ADMIN,
    json_out: JsonOpt = False,
) -> None:
    """Create an API token for a user (shown once)."""
    with store() as opened:
        made, token = app_users.create_token(opened, user, label)
    if json_out:
        print_json({**made.to_json(), "token": token})
    else:
        out.print(
            f"token {made.id} of [bold]{made.user_name}[/] (shown once): [bold]{token}[/]",
            soft_wrap=True,
            highlight=False,
        )


@token_app.command("list")
def token_list(
    user: Annotated[str | None, typer.Option("--user", help="Only this user's tokens.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Live API tokens (never the tokens themselves)."""
    with store() as opened:
        tokens = app_users.list_tokens(opened, user)
    if json_out:
        print_json([t.to_json() for t in tokens])
        return
    rows = [
        [
            t.id,
            t.user_name,
            t.label,
            t.hint,
            f"{t.created_at:%Y-%m-%d %H:%M}",
            t.last_used_at or "never",
        ]
        for t in tokens
    ]
    table(None, ["id", "user", "label", "token", "created", "last used"], rows)


@token_app.command("revoke")
def token_revoke(token_id: int) -> None:
    """Revoke a token: it stops working at once."""
    with store() as opened:
        token = app_users.revoke_token(opened, token_id)
    out.print(f"token {token.id} ({token.label}) of {token.user_name} revoked.")


def audit_cmd(
    limit: Annotated[int, typer.Option("--limit", help="How many entries, newest first.")] = 50,
    target: Annotated[
        str | None, typer.Option("--target", help="Only changes to this source, user, ...")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Who changed what: the audit log of the UI, the API and this command line."""
    with store() as opened:
        found = app_audit.entries(opened, limit, target)
    if json_out:
        print_json([e.to_json() for e in found])
        return
    rows = [
        [
            f"{e.at:%Y-%m-%d %H:%M:%S}",
            e.actor,
            e.via,
            e.action,
            f"{e.target_kind} {e.target or ''}".strip(),
            ", ".join(e.detail.get("fields", [])),
        ]
        for e in found
    ]
    table(None, ["at (UTC)", "who", "via", "action", "target", "fields"], rows)


def record_cli_change(words: tuple[str, ...], params: dict[str, object]) -> None:
    """After a command that changed something succeeded: one audit entry (actor: the OS user)."""
    found = app_audit.cli_action(words)
    if found is None:
        return
    action, kind = found
    target = next(
        (str(params[k]) for k in ("name", "source", "label", "token_id") if params.get(k)), None
    )
    given = [k for k, v in params.items() if v not in (None, False, (), []) and k != "json_out"]
    try:
        with store() as opened:
            app_audit.record(opened, operator(), "cli", action, kind, target, given)
    except ConfigurationError:
        pass  # a home that was never made (the command failed before): nothing changed
