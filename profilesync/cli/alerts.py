"""``profilesync alert``: channels told when a sync fails, a source stops or recovers, and
when the month's operations reach 80% / 100% of the plan."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from profilesync.app import alerts
from profilesync.cli._shared import JsonOpt, err, out, print_json, store, table
from profilesync.errors import ConfigurationError

alert_app = typer.Typer(
    help="Alert channels: a webhook or email told of failed syncs, stopped sources, "
    "recoveries and quota thresholds.",
    no_args_is_help=True,
)


WebhookOpt = Annotated[
    str | None, typer.Option("--webhook", help="POST a Slack-compatible JSON body to this URL.")
]
EmailOpt = Annotated[
    str | None, typer.Option("--email", help="Send email to these addresses (comma-separated).")
]
PortOpt = Annotated[
    int | None,
    typer.Option("--smtp-port", help="SMTP port (by default 587, 465 with ssl, 25 with none)."),
]
PasswordFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--smtp-password-file",
        help="File holding the SMTP password (asked for when --smtp-user is given "
        "without it). Kept encrypted.",
    ),
]
OnOpt = Annotated[
    str | None,
    typer.Option(
        "--on",
        help=f"Events to send, comma-separated (by default all: {', '.join(alerts.EVENTS)}).",
    ),
]


@alert_app.command("add")
def alert_add(
    name: str,
    webhook: WebhookOpt = None,
    email: EmailOpt = None,
    smtp_host: Annotated[str | None, typer.Option("--smtp-host", help="SMTP server.")] = None,
    smtp_port: PortOpt = None,
    smtp_security: Annotated[
        str, typer.Option("--smtp-security", help="starttls, ssl or none.")
    ] = "starttls",
    smtp_user: Annotated[str | None, typer.Option("--smtp-user", help="SMTP login.")] = None,
    smtp_password_file: PasswordFileOpt = None,
    smtp_from: Annotated[
        str | None, typer.Option("--smtp-from", help="Sender address (by default the login).")
    ] = None,
    on: OnOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Add a channel: --webhook URL, or --email TO with --smtp-host."""
    if (webhook is None) == (email is None):
        raise ConfigurationError("give either --webhook URL or --email TO (with --smtp-host)")
    kind, config = "webhook", dict[str, Any](url=webhook)
    if email is not None:
        kind, config = (
            "email",
            {
                "to": email,
                "host": smtp_host,
                "port": smtp_port,
                "security": smtp_security,
                "user": smtp_user,
                "password": _password(smtp_user, smtp_password_file),
                "from": smtp_from or smtp_user,
            },
        )
    with store() as opened:
        doc = alerts.add_channel(opened, name, kind, config, on)
    if json_out:
        print_json(doc)
    else:
        out.print(
            f"alert channel [bold]{doc['name']}[/] ({kind} to {doc['target']}) added; "
            f"events: {', '.join(doc['events'])}. Try it: profilesync alert test {doc['name']}",
            highlight=False,
            soft_wrap=True,
        )


def _password(user: str | None, path: Path | None) -> str | None:
    if path is not None:
        try:
            return path.read_text().rstrip("\r\n")
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read --smtp-password-file {path}: {exc.strerror}"
            ) from None
    if user:
        return str(typer.prompt(f"SMTP password for {user}", hide_input=True))
    return None


@alert_app.command("list")
def alert_list(json_out: JsonOpt = False) -> None:
    """List alert channels (secrets are never shown)."""
    with store() as opened:
        docs = alerts.list_channels(opened)
    if json_out:
        print_json(docs)
    else:
        rows = [[d["name"], d["kind"], d["target"], ", ".join(d["events"])] for d in docs]
        table("alert channels", ["name", "kind", "to", "events"], rows)


@alert_app.command("test")
def alert_test(name: str, json_out: JsonOpt = False) -> None:
    """Send a test message through a channel now and print the receiver's answer."""
    with store() as opened:
        delivery = alerts.send_test(opened, name)
    if json_out:
        print_json(delivery)
    else:
        _print_delivery(delivery)
    if delivery["status"] != "sent":
        raise typer.Exit(1)


def _print_delivery(delivery: dict[str, Any]) -> None:
    line = f"{delivery['channel']}: {delivery['status']}: {delivery['answer']}"
    (out if delivery["status"] == "sent" else err).print(line, highlight=False, soft_wrap=True)


@alert_app.command("deliveries")
def alert_deliveries(
    limit: Annotated[int, typer.Option("--limit", help="How many, newest first.")] = 20,
    json_out: JsonOpt = False,
) -> None:
    """Recent delivery attempts with each receiver's answer."""
    with store() as opened:
        docs = alerts.deliveries(opened, limit)
    if json_out:
        print_json(docs)
    else:
        rows = [
            [d["attempted_at"], d["channel"], d["event"], d["title"], d["status"], d["answer"]]
            for d in docs
        ]
        table("alert deliveries", ["at", "channel", "event", "title", "status", "answer"], rows)


@alert_app.command("remove")
def alert_remove(name: str) -> None:
    """Remove a channel (its past deliveries stay listed)."""
    with store() as opened:
        alerts.remove_channel(opened, name)
    out.print(f"alert channel {name} removed")
