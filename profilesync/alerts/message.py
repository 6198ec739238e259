"""What an alert says: one :class:`Message`, rendered as a Slack-compatible webhook body or
as an email."""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

#: the key of a webhook body that carries the alert's fields for programs
FIELDS_KEY = "profilesync"
_ICONS = {
    "run_failed": ":red_circle:",
    "source_stopped": ":octagonal_sign:",
    "quota_80": ":warning:",
    "quota_100": ":no_entry:",
    "recovered": ":large_green_circle:",
    "test": ":wave:",
}


@dataclass(frozen=True)
class Message:
    """One alert: its event, what it is about (``subject``), a title, the text a person
    reads, and the structured fields a program reads (``source``, ``run_id``, ``error``...)."""

    event: str
    subject: str | None
    title: str
    text: str
    fields: dict[str, Any] = field(default_factory=dict)


def webhook_body(message: Message) -> dict[str, Any]:
    """``{"text", "blocks", "profilesync"}``: Slack (and Mattermost, Teams' Slack-compatible
    hooks...) show ``text``/``blocks``; ``profilesync`` carries the fields for programs."""
    icon = _ICONS.get(message.event, "")
    return {
        "text": f"{icon} {message.title}\n{message.text}".strip(),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": message.title[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": message.text[:3000]}},
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"profilesync · `{message.event}`"}],
            },
        ],
        FIELDS_KEY: {"event": message.event, "subject": message.subject, **message.fields},
    }


def email(message: Message, sender: str, to: list[str]) -> EmailMessage:
    """A plain-text email: the title as subject, the text, then the fields one per line."""
    mail = EmailMessage()
    mail["Subject"] = f"[profilesync] {message.title}"
    mail["From"] = sender
    mail["To"] = ", ".join(to)
    lines = [message.text, "", f"event: {message.event}"]
    lines += [f"{k}: {v}" for k, v in message.fields.items() if v is not None]
    mail.set_content("\n".join(lines) + "\n")
    return mail
