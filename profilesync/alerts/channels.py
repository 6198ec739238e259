"""The two kinds of channel: a webhook (an HTTP POST of JSON) and email over SMTP.

Sending never raises: every outcome is an :class:`Answer` to record (the HTTP status and
the start of the body, the SMTP server's reply to the message, or the error), and every
wait is bounded by :data:`TIMEOUT` seconds, so a dead receiver delays nothing for long.
"""

from __future__ import annotations

import json
import re
import smtplib
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.policy import SMTP
from typing import Any
from urllib.parse import urlsplit

from profilesync.alerts.message import Message, email, webhook_body
from profilesync.errors import ConfigurationError
from profilesync.store.alerting import Channel

KINDS = ("webhook", "email")
SECURITY = ("starttls", "ssl", "none")
#: seconds to wait for a receiver to connect and to answer
TIMEOUT = 5.0
#: characters of a receiver's answer kept with the delivery
ANSWER_CHARS = 300
_EMAIL = re.compile(r"[^@\s,;<>]+@[^@\s,;<>]+")


@dataclass(frozen=True)
class Answer:
    """How a delivery went: ``ok`` and what the receiver said (or what failed)."""

    ok: bool
    text: str


def check_config(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """The settings of a new channel, checked and normalised; ConfigurationError otherwise."""
    if kind == "webhook":
        return {"url": _check_url(str(config.get("url") or ""))}
    if kind == "email":
        return _check_email(config)
    raise ConfigurationError(f"alert channel kind {kind!r}: choose webhook or email")


def _check_url(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"webhook URL {_short(url)!r} is not an http(s) URL: give the full address the "
            "receiver gave you, e.g. https://hooks.slack.com/services/..."
        )
    return url.strip()


def _check_email(config: dict[str, Any]) -> dict[str, Any]:
    host = str(config.get("host") or "").strip()
    security = str(config.get("security") or "starttls")
    if not host or security not in SECURITY:
        raise ConfigurationError(
            "an email channel needs an SMTP host (--smtp-host) and a security of "
            f"{', '.join(SECURITY)} (got {security!r})",
            ui_fix="Fill in the SMTP host and choose its security",
        )
    to = config.get("to") or []
    to = [a.strip() for a in (to.split(",") if isinstance(to, str) else to) if a.strip()]
    sender = str(config.get("from") or "").strip()
    if not sender:
        raise ConfigurationError(
            "an email channel needs a sender address (--smtp-from), e.g. profilesync@example.com",
            ui_fix="Fill in the sender address",
        )
    bad = [a for a in [*to, sender] if not _EMAIL.fullmatch(a)]
    if not to or bad:
        raise ConfigurationError(
            f"email addresses {', '.join(map(repr, bad)) or '(none)'} are not valid: give "
            "--email TO (comma-separated) and --smtp-from with addresses like ops@example.com",
            ui_fix="Give recipient and sender addresses like ops@example.com",
        )
    return {
        "host": host,
        "port": _port(config.get("port"), security),
        "security": security,
        "user": str(config.get("user") or "") or None,
        "password": str(config.get("password") or "") or None,
        "from": sender,
        "to": to,
    }


def _port(value: Any, security: str) -> int:
    if value in (None, ""):
        return {"ssl": 465, "starttls": 587}.get(security, 25)
    text = str(value).strip()
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ConfigurationError(f"SMTP port {_short(text)!r} is not a port number (1-65535)")
    return int(text)


def public(channel: Channel) -> dict[str, Any]:
    """What may be shown of a channel: a webhook's host only, never a password."""
    config = channel.config
    if channel.kind == "webhook":
        parts = urlsplit(str(config.get("url", "")))
        target = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/***"
    else:
        target = f"{', '.join(config.get('to', []))} via {config.get('host')}:{config.get('port')}"
    return {
        "name": channel.name,
        "kind": channel.kind,
        "target": target,
        "events": list(channel.events),
        "created_at": channel.created_at.isoformat() if channel.created_at else None,
    }


def send(channel: Channel, message: Message, timeout: float = TIMEOUT) -> Answer:
    """Deliver ``message`` through ``channel``; never raises."""
    try:
        if channel.kind == "webhook":
            return post_webhook(str(channel.config["url"]), webhook_body(message), timeout)
        return send_email(channel.config, message, timeout)
    except Exception as exc:  # a bug or a setting we did not foresee: still only an answer
        return Answer(False, _error(exc))


def post_webhook(url: str, body: dict[str, Any], timeout: float = TIMEOUT) -> Answer:
    """POST ``body`` as JSON; a 2xx answer is a delivery, anything else is recorded."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "profilesync-alerts"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Answer(True, _http(response.status, response.read(ANSWER_CHARS * 4)))
    except urllib.error.HTTPError as exc:
        return Answer(False, _http(exc.code, exc.read(ANSWER_CHARS * 4)))
    except (OSError, ValueError) as exc:
        return Answer(False, _error(exc))


def send_email(config: dict[str, Any], message: Message, timeout: float = TIMEOUT) -> Answer:
    """Send one email; the answer is the server's reply to the message (``250 ...``)."""
    to = list(config["to"])
    mail = email(message, str(config["from"]), to)
    host, port, security = str(config["host"]), int(config["port"]), config.get("security")
    try:
        context = ssl.create_default_context()
        smtp = (
            smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
            if security == "ssl"
            else smtplib.SMTP(host, port, timeout=timeout)
        )
        with smtp:
            if security == "starttls":
                smtp.starttls(context=context)
            if config.get("user"):
                smtp.login(str(config["user"]), str(config.get("password") or ""))
            return _transfer(smtp, str(config["from"]), to, mail.as_bytes(policy=SMTP))
    except (smtplib.SMTPException, OSError) as exc:
        return Answer(False, _error(exc))


def _transfer(smtp: smtplib.SMTP, sender: str, to: list[str], data: bytes) -> Answer:
    """MAIL, RCPT and DATA one by one, so the answer is the server's own reply to the
    message (``send_message`` keeps it to itself)."""
    smtp.ehlo_or_helo_if_needed()
    code, reply = smtp.mail(sender)
    if code != 250:
        return Answer(False, _smtp("MAIL FROM refused", code, reply))
    refused = []
    for address in to:
        code, reply = smtp.rcpt(address)
        if code not in (250, 251):
            refused.append(_smtp(address, code, reply))
    if len(refused) == len(to):
        return Answer(False, _short("; ".join(refused)))
    code, reply = smtp.data(data)
    if code != 250:
        return Answer(False, _smtp("message refused", code, reply))
    text = _smtp("", code, reply)
    return Answer(not refused, _short(text + "".join(f"; refused {r}" for r in refused)))


def _smtp(what: str, code: int, reply: bytes) -> str:
    return f"{what + ': ' if what else ''}{code} {reply.decode(errors='replace').strip()}"


def _http(status: int, body: bytes) -> str:
    return _short(f"HTTP {status}: {body.decode(errors='replace').strip()}")


def _error(exc: BaseException) -> str:
    return _short(f"{type(exc).__name__}: {exc}")


def _short(text: str) -> str:
    return text if len(text) <= ANSWER_CHARS else text[: ANSWER_CHARS - 3] + "..."
