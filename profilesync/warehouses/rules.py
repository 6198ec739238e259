"""The rules every warehouse shares: how long changes must be kept, and what to say when not.

A CDC source reads the changes since its checkpoint; the warehouse keeps them only for a
while (Delta's log and file retention, DuckLake's ``expire_older_than``, Snowflake's Time
Travel). :func:`retention_check` and :func:`time_travel_check` judge a retention against
the sync frequency for "Test mapping"; :func:`expired_error` and :func:`replaced_error` are
the errors a sync stops with when the changes are gone or the table was replaced. They are
pure functions, written once here and used by every kind.
"""

from __future__ import annotations

from profilesync.errors import RetentionExceededError, TableReplacedError, resync_fixes
from profilesync.model import format_frequency
from profilesync.warehouses.protocol import Check

DAY = 86400
WEEK = 7 * DAY
#: the "strategy" check of a table read by snapshot diff
DIFF_NOTE = "snapshot diff: every sync reads the whole table and applies only rows that differ"


def retention_check(
    name: str,
    setting: str,
    value: str,
    seconds: int | None,
    frequency_seconds: int,
    fix: str,
    what: str = "changes",
) -> Check:
    """``setting = value`` (``seconds`` long; None when unreadable) against a sync every
    ``frequency_seconds``: refused when shorter, a warning under 7 days.

    ``what`` names what expires (``changes``, ``snapshots``); ``fix`` is the SQL that keeps
    them 7 days.
    """
    if seconds is None:
        return Check(name, "warn", f"{setting} = {value!r} is not a duration profilesync reads")
    if seconds < frequency_seconds:
        return Check(
            name,
            "fail",
            f"{setting} = {value} is shorter than the sync frequency "
            f"{format_frequency(frequency_seconds)}: {what} would expire before they are read",
            fix,
        )
    if seconds < WEEK:
        return Check(
            name,
            "warn",
            f"{setting} = {value} is under 7 days: a paused or failing source will need a resync sooner",
            fix,
        )
    return Check(name, "pass", f"{setting} = {value}")


def time_travel_check(
    setting: str, table: str, days: int, frequency_seconds: int, fix: str
) -> Check:
    """The rule where the retention is also the read window: a sync every F needs 2F.

    Half the retention is margin for a late, paused or failed run: a checkpoint older than
    the retention can only be recovered by a resync. So Snowflake Standard Edition's 1-day
    maximum allows syncs every 12 hours at most.
    """
    if days <= 0:
        return Check(
            "retention",
            "fail",
            f"{setting} on {table}: Time Travel is off, so no change can be read.",
            fix,
        )
    allowed = days * DAY // 2
    if frequency_seconds > allowed:
        return Check(
            "retention",
            "fail",
            f"{setting} keeps changes {format_frequency(days * DAY)}; a sync every "
            f"{format_frequency(frequency_seconds)} is longer than half of that, the margin a late "
            f"or failed run needs. Sync every {format_frequency(allowed)} or less (Snowflake "
            "Standard Edition keeps at most 1 day), or raise the retention.",
            fix,
        )
    if days * DAY < WEEK:
        return Check(
            "retention",
            "warn",
            f"{setting} is under 7 days: a source paused or failing for longer than "
            f"{format_frequency(days * DAY)} will need a resync.",
            fix,
        )
    return Check("retention", "pass", f"{setting}")


def replaced_error(table: str, why: str, source_name: str) -> TableReplacedError:
    """The checkpoint's table was dropped and re-created; ``why`` says how that showed."""
    return TableReplacedError(
        f"table {table} was dropped and re-created ({why}), as a dbt full refresh or "
        "CREATE OR REPLACE TABLE does. Nothing was applied. CDC needs incremental models; "
        f"run `profilesync sync {source_name} --resync` to diff the new table against the store.",
        **resync_fixes(source_name),
    )


def expired_error(
    table: str, since: str, why: str, remedy: str, source_name: str
) -> RetentionExceededError:
    """The changes ``since`` the checkpoint (``"after version 3"``) are gone.

    ``remedy`` is the warehouse's setting that keeps them longer.
    """
    return RetentionExceededError(
        f"the changes of {table} {since} are no longer retained: {why}. Nothing was applied. "
        f"{remedy}, and run `profilesync sync {source_name} --resync` to diff the table "
        "against the store.",
        **resync_fixes(source_name),
    )
