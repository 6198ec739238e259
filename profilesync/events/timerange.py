"""Moved to :mod:`profilesync.query.timerange`; this import path stays for one release."""

from profilesync.query.timerange import (
    ALLOWED,
    DEFAULT_SPAN,
    EARLIEST,
    LATEST,
    MAX_BUCKETS,
    buckets,
    moment,
    time_range,
    truncate,
)

__all__ = [
    "ALLOWED",
    "DEFAULT_SPAN",
    "EARLIEST",
    "LATEST",
    "MAX_BUCKETS",
    "buckets",
    "moment",
    "time_range",
    "truncate",
]
