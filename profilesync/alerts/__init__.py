"""Alerts: tell people (a webhook, email) when a source fails or stops, when it recovers,
and when this month's operations reach 80% and 100% of the plan.

- :mod:`profilesync.alerts.rules`: which event a run or the usage raises, once per change;
- :mod:`profilesync.alerts.message`: what an alert says, as a webhook body or an email;
- :mod:`profilesync.alerts.channels`: the senders, which answer and never raise.

The use cases (adding channels, sending after a run, recording each attempt) are in
:mod:`profilesync.app.alerts`.
"""

from __future__ import annotations

from profilesync.alerts.channels import KINDS, Answer, check_config, public, send
from profilesync.alerts.message import Message
from profilesync.alerts.rules import (
    EVENTS,
    quota_events,
    run_events,
    sample_message,
    source_subject,
)

__all__ = [
    "EVENTS",
    "KINDS",
    "Answer",
    "Message",
    "check_config",
    "public",
    "quota_events",
    "run_events",
    "sample_message",
    "send",
    "source_subject",
]
