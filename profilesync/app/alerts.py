"""Alert use cases: channels (add, list, remove, test), their deliveries, and telling them
after a run.

Sending happens after the sync has committed and outside the store's lock: the store is
read and written in short steps (``lock``, when the caller shares the store between
threads), the receivers are called in between. A receiver that fails, hangs or is gone is
recorded as a failed delivery; nothing here raises into a sync.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from profilesync import alerts
from profilesync.alerts import Message
from profilesync.app.home import Store
from profilesync.errors import ConcurrentSyncError, ConfigurationError, NotFoundError
from profilesync.model import check_name
from profilesync.store.alerting import Channel, Delivery

__all__ = [
    "EVENTS",
    "KINDS",
    "add_channel",
    "deliveries",
    "get_channel",
    "list_channels",
    "notify_run",
    "parse_events",
    "remove_channel",
    "send_test",
]

EVENTS = alerts.EVENTS
KINDS = alerts.KINDS
log = logging.getLogger("profilesync.alerts")
Lock = AbstractContextManager[Any]


def parse_events(events: str | Iterable[str] | None) -> tuple[str, ...]:
    """``run_failed,recovered`` (or a list) checked against :data:`EVENTS`; None: all."""
    if events is None:
        return EVENTS
    names = events.split(",") if isinstance(events, str) else list(events)
    chosen = [e.strip() for e in names if e.strip()]
    unknown = [e for e in chosen if e not in EVENTS]
    if unknown or not chosen:
        raise ConfigurationError(
            f"unknown alert event(s) {', '.join(unknown) or '(none given)'}: choose from "
            f"{', '.join(EVENTS)}"
        )
    return tuple(e for e in EVENTS if e in chosen)


def add_channel(
    store: Store,
    name: str,
    kind: str,
    config: dict[str, Any],
    events: str | Iterable[str] | None = None,
) -> dict[str, Any]:
    """Save a channel (its settings checked; secrets encrypted); what may be shown of it."""
    name = check_name(name, "alert channel")
    channel = Channel(name, kind, alerts.check_config(kind, config), parse_events(events))
    return alerts.public(store.add_alert_channel(channel))


def list_channels(store: Store) -> list[dict[str, Any]]:
    return [alerts.public(c) for c in store.list_alert_channels()]


def get_channel(store: Store, name: str) -> dict[str, Any]:
    return alerts.public(store.get_alert_channel(name))


def remove_channel(store: Store, name: str) -> None:
    """Delete a channel; its past deliveries stay in the history."""
    store.delete_alert_channel(name)


def deliveries(store: Store, limit: int = 50) -> list[dict[str, Any]]:
    """The latest delivery attempts, newest first, with each receiver's answer."""
    return [d.to_json() for d in store.deliveries(limit)]


def send_test(store: Store, name: str, *, lock: Lock | None = None) -> dict[str, Any]:
    """Send a test message through ``name`` now; the recorded delivery with its answer."""
    guard = lock or nullcontext()
    with guard:
        channel = store.get_alert_channel(name)
    sent = _send(store, [(channel, alerts.sample_message(name))], guard)
    return sent[0].to_json()


def notify_run(
    store: Store,
    name: str,
    *,
    error: BaseException | None = None,
    retrying: bool = False,
    stopped: bool | None = None,
    lock: Lock | None = None,
) -> list[Delivery]:
    """Tell the channels what a finished run of ``name`` changed (see
    :mod:`profilesync.alerts.rules`); the deliveries made. Never raises.

    ``retrying``: the failure will be retried, so nothing changed yet. ``stopped``: the
    caller stopped the source for a person (default: judged from the error's code).
    """
    if retrying or isinstance(error, ConcurrentSyncError):
        return []
    guard = lock or nullcontext()
    try:
        with guard:
            messages = _decide(store, name, error, stopped)
            plan = [
                (channel, message)
                for message in messages
                for channel in store.list_alert_channels()
                if message.event in channel.events
            ]
        return _send(store, plan, guard)
    except Exception:  # alerts never break a sync: the run is committed already
        log.exception("alerts after the run of %s could not be sent", name)
        return []


def _decide(
    store: Store, name: str, error: BaseException | None, stopped: bool | None
) -> list[Message]:
    try:
        store.get_source(name)
    except NotFoundError:
        return []  # deleted meanwhile, or never there: nothing ran
    last = store.runs(name, 1)
    messages = alerts.run_events(
        store, name, error=error, run=last[0] if last else None, stopped=stopped
    )
    if error is None:
        messages += alerts.quota_events(store)
    return messages


def _send(store: Store, plan: list[tuple[Channel, Message]], guard: Lock) -> list[Delivery]:
    """Call each receiver (no lock held), then record every answer."""
    answers = [(channel, message, alerts.send(channel, message)) for channel, message in plan]
    with guard:
        return [
            store.record_delivery(
                channel.name,
                message.event,
                message.subject,
                message.title,
                "sent" if answer.ok else "failed",
                answer.text,
            )
            for channel, message, answer in answers
        ]
