"""The store's part for alerts: channels, each delivery attempt and the state per subject.

The catalog tables are ``alert_channels``, ``alert_deliveries`` and ``alert_state``
(schema version 5). A channel's secret settings (:data:`SECRET_SETTINGS`, and any setting
named like a secret) are encrypted at rest like a connection's (see
:mod:`profilesync.secrets`). What a channel does and when it is told is
:mod:`profilesync.alerts`' business; the store only keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

#: settings kept encrypted: a webhook's URL is its credential (Slack's carry a token in
#: their path), an SMTP password
SECRET_SETTINGS = ("url", "password")


def _iso(at: datetime | None) -> str | None:
    return at.astimezone(UTC).isoformat() if at else None


@dataclass(frozen=True)
class Channel:
    """Where alerts go: ``kind`` ``webhook`` or ``email``, its settings, the events it takes."""

    name: str
    kind: str
    config: dict[str, Any] = field(default_factory=dict)
    events: tuple[str, ...] = ()
    created_at: datetime | None = None


@dataclass(frozen=True)
class Delivery:
    """One attempt to tell a channel: ``status`` ``sent`` or ``failed``, and the receiver's
    answer (HTTP status and the start of the body, the SMTP reply, or the error)."""

    id: int
    channel: str
    event: str
    subject: str | None
    title: str
    status: str
    answer: str | None
    attempted_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "channel": self.channel,
            "event": self.event,
            "subject": self.subject,
            "title": self.title,
            "status": self.status,
            "answer": self.answer,
            "attempted_at": _iso(self.attempted_at),
        }


class Alerting(Protocol):
    """Alert channels, deliveries and state (implemented for every backend by the catalog)."""

    def add_alert_channel(self, channel: Channel) -> Channel: ...
    def get_alert_channel(self, name: str) -> Channel: ...
    def list_alert_channels(self) -> list[Channel]: ...
    def delete_alert_channel(self, name: str) -> None: ...

    def record_delivery(
        self,
        channel: str,
        event: str,
        subject: str | None,
        title: str,
        status: str,
        answer: str | None,
    ) -> Delivery: ...
    def deliveries(self, limit: int = 50, channel: str | None = None) -> list[Delivery]:
        """The latest attempts first."""
        ...

    def alert_state(self, subject: str) -> str | None: ...
    def swap_alert_state(self, subject: str, state: str) -> str | None:
        """Set ``subject``'s state and return the one it had, in one transaction: two
        processes noticing the same change send one alert."""
        ...

    def forget_alert_state(self, subject: str) -> None:
        """Drop ``subject``'s state (none kept is the same as ``ok``)."""
        ...
