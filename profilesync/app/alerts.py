"""Alert use cases: channels (add, list, remove, test), their deliveries, and telling them
after a run.

After a run, :func:`decide_run` records what changed and returns the alerts to send, in
one short step the caller may take under its locks; :func:`deliver` then calls the
receivers with no lock held (neither the store's nor one a sync or a write waits for)
and records each answer in its own short write (``lock``, when the caller shares the
store between threads). A receiver that fails, hangs or is gone is recorded as a failed
delivery; nothing here raises into a sync.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from profilesync import alerts
from profilesync.alerts import Message
from profilesync.app.home import Store
from profilesync.errors import (
    ConcurrentSyncError,
    ConfigurationError,
    NotFoundError,
    QuotaExceededError,
)
from profilesync.model import check_name
from profilesync.store.alerting import Channel, Delivery

__all__ = [
    "EVENTS",
    "KINDS",
    "add_channel",
    "decide_run",
    "deliver",
    "deliveries",
    "forget_source",
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
#: alerts decided and not sent yet: each channel with the message it takes
Pending = list[tuple[Channel, Message]]


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
    """Tell the channels what a finished run of ``name`` changed: :func:`decide_run` then
    :func:`deliver`. Never raises. Hold no lock a sync or a write waits for when calling it;
    a caller that must decide under such a lock calls the two itself."""
    pending = decide_run(store, name, error=error, retrying=retrying, stopped=stopped, lock=lock)
    return deliver(store, pending, lock=lock)


def decide_run(
    store: Store,
    name: str,
    *,
    error: BaseException | None = None,
    retrying: bool = False,
    stopped: bool | None = None,
    lock: Lock | None = None,
) -> Pending:
    """What a finished run of ``name`` changed (see :mod:`profilesync.alerts.rules`), the
    new state recorded, and the channels to tell: store reads and writes only, so it may
    run under the sync's locks. Never raises.

    ``retrying``: the failure will be retried, so nothing changed yet. ``stopped``: the
    caller stopped the source for a person (default: judged from the error's code).
    """
    if retrying or isinstance(error, ConcurrentSyncError):
        return []
    try:
        with lock or nullcontext():
            messages = _decide(store, name, error, stopped)
            channels = store.list_alert_channels() if messages else []
        return [(c, m) for m in messages for c in channels if m.event in c.events]
    except Exception:  # alerts never break a sync: the run is committed already
        log.exception("alerts after the run of %s could not be decided", name)
        return []


def deliver(store: Store, pending: Pending, *, lock: Lock | None = None) -> list[Delivery]:
    """Send each pending alert (no lock held while a receiver is called), recording each
    answer in its own short write. Never raises."""
    try:
        return _send(store, pending, lock or nullcontext())
    except Exception:
        log.exception("alerts could not be sent or recorded")
        return []


def forget_source(store: Store, name: str) -> None:
    """A deleted source: forget its alert state, so a new source of that name starts
    afresh (no ``recovered`` for a failure of the one before)."""
    store.forget_alert_state(alerts.source_subject(name))


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
    elif getattr(error, "code", None) == QuotaExceededError.code:
        messages += alerts.quota_events(store, refused=error)  # the limit is reached
    return messages


def _send(store: Store, pending: Pending, guard: Lock) -> list[Delivery]:
    """Call each receiver (no lock held), then record its answer."""
    recorded = []
    for channel, message in pending:
        answer = alerts.send(channel, message)
        with guard:
            recorded.append(
                store.record_delivery(
                    channel.name,
                    message.event,
                    message.subject,
                    message.title,
                    "sent" if answer.ok else "failed",
                    answer.text,
                )
            )
    return recorded
