"""The time range of a segmentation: whole UTC days, bounded, cut into buckets.

Dates are checked here, before any SQL runs, so a range the store cannot hold (year
10000, an inclusive end on 9999-12-31, a time zone pushing a date past year 1) or one
that would make millions of buckets is refused with the field and the allowed range,
instead of failing deep inside date arithmetic.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from profilesync.errors import ConfigurationError

#: how far back a query without ``start`` looks, by interval
DEFAULT_SPAN = {
    "hour": timedelta(days=2),
    "day": timedelta(days=30),
    "week": timedelta(weeks=12),
    "month": timedelta(days=365),
}
MAX_BUCKETS = 5_000
#: events are stored from the epoch to the end of 9999; a range must fit inside
EARLIEST = datetime(1970, 1, 1)
LATEST = datetime(9999, 12, 31)  # exclusive: an inclusive ``end`` is at most 9999-12-30
ALLOWED = f"dates from {EARLIEST:%Y-%m-%d} to {LATEST - timedelta(days=1):%Y-%m-%d}"
_STEP = {
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
    "week": timedelta(weeks=1),
    "month": timedelta(days=28),  # the shortest month: never undercounts the buckets
}


def moment(field: str, value: datetime | date, inclusive_end: bool = False) -> datetime:
    """``value`` as naive UTC (a date is its midnight, or the next one for an inclusive end)."""
    try:
        if isinstance(value, datetime):
            at = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
        else:
            at = datetime(value.year, value.month, value.day)
            at += timedelta(days=1) if inclusive_end else timedelta(0)
    except OverflowError:
        at = datetime.max
    if not EARLIEST <= at <= LATEST:
        raise ConfigurationError(f"{field} {value.isoformat()} is out of range: use {ALLOWED}")
    return at


def time_range(
    start: datetime | date | None,
    end: datetime | date | None,
    interval: str,
    now: datetime | None = None,
) -> tuple[datetime, datetime]:
    """``[start, end)`` in naive UTC: dates are whole days, ``end`` inclusive.

    Refuses dates out of range, an ``end`` not after ``start`` and spans of more than
    :data:`MAX_BUCKETS` buckets, naming the field and what is allowed.
    """
    today = (now or datetime.now(UTC)).date()
    last = moment("end", end if end is not None else today, inclusive_end=True)
    first = (
        moment("start", start)
        if start is not None
        else max(EARLIEST, last - DEFAULT_SPAN[interval])
    )
    if first >= last:
        raise ConfigurationError(
            f"end {last:%Y-%m-%d %H:%M} is not after start {first:%Y-%m-%d %H:%M}: "
            "swap them, or widen the range"
        )
    if (last - first) // _STEP[interval] > MAX_BUCKETS + 1:
        raise ConfigurationError(
            f"start {first:%Y-%m-%d} to end {last:%Y-%m-%d} is more than {MAX_BUCKETS:,} "
            f"{interval} buckets: shorten the range or use a longer interval"
        )
    return first, last


def truncate(at: datetime, interval: str) -> datetime:
    """Like SQL ``date_trunc`` (weeks start on Monday)."""
    if interval == "hour":
        return at.replace(minute=0, second=0, microsecond=0)
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    if interval == "week":
        return day - timedelta(days=day.weekday())
    if interval == "month":
        return day.replace(day=1)
    return day


def buckets(start: datetime, end: datetime, interval: str) -> list[datetime]:
    out, at = [], truncate(start, interval)
    while at < end:
        out.append(at)
        if len(out) > MAX_BUCKETS:
            raise ConfigurationError(
                f"more than {MAX_BUCKETS:,} {interval} buckets: shorten the range or use a longer interval"
            )
        at = _next(at, interval)
    return out


def _next(at: datetime, interval: str) -> datetime:
    """The next bucket; past year 9999 (the end of the last bucket) is ``datetime.max``."""
    try:
        if interval == "month":
            return at.replace(year=at.year + at.month // 12, month=at.month % 12 + 1)
        return at + _STEP[interval]
    except (OverflowError, ValueError):
        return datetime.max
