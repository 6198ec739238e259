"""When to alert: the events a run or this month's usage raise, once per change of state.

Each subject has a state in the store (``alert_state``):

- ``source:<name>`` is ``ok``, ``failed`` or ``stopped``. A run that failed for good (the
  retries used up, or an error retrying cannot fix) makes it ``failed`` and raises
  ``run_failed``; one that needs a person (:data:`NEEDS_PERSON`) makes it ``stopped`` and
  raises ``source_stopped``; the first successful run after either raises ``recovered``.
  A failure that will be retried changes nothing, and a state that does not change
  raises nothing: a source failing every hour alerts once.
- ``quota_80:<month>`` and ``quota_100:<month>`` are ``sent`` once this month's operations
  reached that share of the plan's limit: each threshold alerts once a month. The quota
  refuses any sync that would pass the limit, so usage seldom lands on 100% exactly: a
  refused sync counts as reaching it (``quota_100``, besides the source's stop).

A deleted source's state is forgotten (:func:`profilesync.app.alerts.forget_source`), so
a new source of the same name starts afresh.
"""

from __future__ import annotations

from typing import Any

from profilesync.alerts.message import Message
from profilesync.errors import NEEDS_PERSON
from profilesync.store.protocol import Store

#: every event a channel can take
EVENTS = ("run_failed", "source_stopped", "quota_80", "quota_100", "recovered")
#: quota events and the share of the limit (percent) that raises them
THRESHOLDS = (("quota_80", 80), ("quota_100", 100))
_RAISED_BY = {"failed": "run_failed", "stopped": "source_stopped"}


def source_subject(name: str) -> str:
    return f"source:{name}"


def run_state(error_code: str | None, *, stopped: bool | None = None) -> str:
    """A finished run's state: ``ok``, or ``stopped`` when a person must act, else ``failed``."""
    if error_code is None:
        return "ok"
    needs_person = error_code in NEEDS_PERSON if stopped is None else stopped
    return "stopped" if needs_person else "failed"


def transition(previous: str | None, current: str) -> str | None:
    """The event a change of a source's state raises, if any."""
    if current == (previous or "ok"):
        return None
    if current == "ok":
        return "recovered"
    return _RAISED_BY[current]


def crossed(used: int, limit: int) -> list[tuple[str, int]]:
    """The quota thresholds ``used`` operations have reached out of ``limit``."""
    return [(event, pct) for event, pct in THRESHOLDS if limit > 0 and used * 100 >= limit * pct]


def run_events(
    store: Store,
    name: str,
    *,
    error: BaseException | None = None,
    run: dict[str, Any] | None = None,
    stopped: bool | None = None,
) -> list[Message]:
    """The alert a finished run raises (none, or one), its state recorded in ``store``.

    ``error`` is the run's error (None: it succeeded); ``run`` its history line;
    ``stopped`` overrides whether the failure needs a person (the scheduler knows).
    """
    code = getattr(error, "code", "error") if error is not None else None
    state = run_state(code, stopped=stopped)
    subject = source_subject(name)
    if state == "ok" and store.alert_state(subject) in (None, "ok"):
        return []  # most runs: read only, write on a change
    previous = store.swap_alert_state(subject, state)
    event = transition(previous, state)
    if event is None:
        return []
    return [_run_message(event, name, subject, error, run or {}, previous)]


def _run_message(
    event: str,
    name: str,
    subject: str,
    error: BaseException | None,
    run: dict[str, Any],
    previous: str | None,
) -> Message:
    fields = {
        "source": name,
        "run_id": run.get("id"),
        "status": run.get("status"),
        "error": str(error) if error is not None else None,
        "error_code": getattr(error, "code", None) if error is not None else None,
        "at": run.get("finished_at"),
    }
    if event == "recovered":
        title = f"Source {name} recovered"
        text = f"Source *{name}* synced successfully again after it had {previous}."
        counts = ", ".join(f"{run[k]} {k}" for k in ("inserted", "updated", "deleted") if k in run)
        text += f" Run {run.get('id')}: {counts}." if counts else ""
        fields.update({k: run.get(k) for k in ("inserted", "updated", "deleted", "operations")})
    elif event == "source_stopped":
        title = f"Source {name} stopped: a person must act"
        text = f"Source *{name}* stopped syncing until someone acts:\n{error}"
    else:
        title = f"Sync of {name} failed"
        text = f"The sync of *{name}* failed (after any retries):\n{error}"
    return Message(event, subject, title, text, fields)


def quota_events(store: Store, *, refused: BaseException | None = None) -> list[Message]:
    """The quota thresholds this month's usage crossed for the first time this month.

    ``refused``: the quota refused a sync (which would have passed the limit), so the
    limit counts as reached whatever the usage: ``quota_100`` only, once a month too.
    """
    usage = store.usage()
    used, limit, month = int(usage["used"]), int(usage["limit"]), str(usage["month"])
    reached = [THRESHOLDS[-1]] if refused is not None else crossed(used, limit)
    messages = []
    for event, pct in reached:
        subject = f"{event}:{month}"
        if store.swap_alert_state(subject, "sent") == "sent":
            continue
        fields = {
            "month": month,
            "used": used,
            "limit": limit,
            "plan": usage["plan"],
            "threshold": pct,
        }
        if refused is not None:
            title = f"Monthly operations limit reached ({month}): a sync was refused"
            text = (
                f"{used:,} of {limit:,} operations of the {usage['plan']} plan are used in "
                f"{month}; a sync that would pass the limit was refused:\n{refused}"
            )
            fields.update(error=str(refused), error_code=getattr(refused, "code", None))
        else:
            title = f"{pct}% of this month's operations used ({month})"
            text = (
                f"{used:,} of {limit:,} operations ({used * 100 // limit}%) of the "
                f"{usage['plan']} plan are used in {month}."
            )
            text += (
                " Syncs that would pass the limit are refused until the month ends or the "
                "limit is raised."
                if pct >= 100
                else ""
            )
        messages.append(Message(event, subject, title, text, fields))
    return messages


def sample_message(channel: str) -> Message:
    """What ``alert test`` sends."""
    return Message(
        "test",
        None,
        f"Test alert from profilesync to {channel}",
        f"This is a test of the alert channel *{channel}*: if you read this, it works.",
        {"channel": channel},
    )
