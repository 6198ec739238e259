"""The small values everything else passes around."""

from __future__ import annotations

import math
import re
import resource
import sys
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

from profilesync.errors import ConfigurationError

Strategy = Literal["cdc", "diff"]
DEFAULT_FREQUENCY_SECONDS = 12 * 3600

_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400, "day": 86400}
_FREQ = re.compile(r"^\s*(\d+)\s*([a-z]*)\s*$")
MIN_FREQUENCY_SECONDS = 60
#: a source syncs at least once a year: longer values overflow date arithmetic downstream
MAX_FREQUENCY_SECONDS = 365 * 86400

#: the one rule for connection and source names: they appear in URLs, file names and logs
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
NAME_RULE = "1-63 letters, digits, '_', '-' or '.', starting with a letter or digit"


#: the setting that bounds a sync's working memory (the transform's and the store's DuckDB)
MEMORY_LIMIT_SETTING = "sync_memory_limit"
DEFAULT_MEMORY_LIMIT = 1000**3  # 1GB: a laptop spares that for a sync of any size
MIN_MEMORY_LIMIT = 16 * 1000**2
MAX_MEMORY_LIMIT = 1000**4
_BYTES = {"b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4}
_BYTES.update({"kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4})
_SIZE = re.compile(r"^\s*(\d{1,15})\s*([a-z]*)\s*$")


def parse_memory_limit(text: str) -> int:
    """``"1GB"`` -> 1,000,000,000 bytes; KB, MB, GB, TB count in powers of 1000 and KiB, MiB,
    GiB, TiB in powers of 1024, as DuckDB's ``memory_limit`` does. Bounded to [16MB, 1TB]."""
    match = _SIZE.match(str(text).lower())
    unit = match.group(2) if match else ""
    if not match or unit not in _BYTES:
        raise ConfigurationError(
            f"{MEMORY_LIMIT_SETTING} {_shown(text)} is not understood: write a whole number and "
            "a unit, like 512MB, 1GB or 4GB, or `default`"
        )
    value = int(match.group(1)) * _BYTES[unit]
    if not MIN_MEMORY_LIMIT <= value <= MAX_MEMORY_LIMIT:
        raise ConfigurationError(
            f"{MEMORY_LIMIT_SETTING} {_shown(text)} is out of range: give from 16MB to 1TB, "
            "or `default`"
        )
    return value


def peak_memory_bytes() -> int:
    """This process's peak resident memory since it started (``ru_maxrss``; Linux counts
    KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def memory_limit(stored: str | None) -> int:
    """The limit in force from the stored setting (None: the default)."""
    return DEFAULT_MEMORY_LIMIT if stored is None else parse_memory_limit(stored)


def check_name(name: str, what: str) -> str:
    """``name`` without surrounding blanks, or a ConfigurationError naming the rule.

    The CLI, the API and the UI all create connections and sources through this rule, so
    every name that can be saved can also be shown and addressed (``/sources/<name>``).
    """
    stripped = (name or "").strip()
    if not NAME_PATTERN.fullmatch(stripped):
        shown = stripped if len(stripped) <= 70 else stripped[:67] + "..."
        raise ConfigurationError(
            f"{what} name {shown!r} is not valid: use {NAME_RULE} (for example `users-prod`)"
        )
    return stripped


def parse_frequency(text: str | int) -> int:
    """``"12h"`` -> 43200. Accepts s, m/min, h, d; a bare number is seconds.

    Bounded to [1 minute, 365 days] here, so the CLI, the API and the UI refuse the same
    values with the same message instead of saving one the scheduler cannot add to a date.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        seconds = text
    else:
        match = _FREQ.match(str(text).lower())
        if not match or match.group(2) not in (*_UNITS, ""):
            raise ConfigurationError(
                f"frequency {_shown(text)} is not understood: write a whole number and a unit, "
                "like 30m, 1h, 12h or 1d"
            )
        digits, unit = match.groups()
        # a number this long is past the bound whatever its unit: no need to convert it
        too_long = len(digits.lstrip("0")) > 12
        seconds = MAX_FREQUENCY_SECONDS + 1 if too_long else int(digits) * _UNITS.get(unit, 1)
    if seconds < MIN_FREQUENCY_SECONDS:
        raise ConfigurationError(f"frequency {_shown(text)} is under one minute: use at least 1m")
    if seconds > MAX_FREQUENCY_SECONDS:
        raise ConfigurationError(
            f"frequency {_shown(text)} is longer than 365 days: use at most 365d "
            "(or pause the source to stop scheduled syncs)"
        )
    return seconds


def _shown(text: str | int) -> str:
    """The value as the user wrote it, cut short: a message stays one readable line."""
    value = repr(text if isinstance(text, int) else str(text))
    return value if len(value) <= 40 else value[:37] + "..."


def format_frequency(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True)
class Connection:
    """Where one warehouse is and how to reach it; reusable by many sources."""

    name: str
    kind: str
    config: dict[str, Any]


@dataclass(frozen=True)
class PropertyMapping:
    """One profile property: the SQL expression that computes it and its display name."""

    name: str
    expression: str  # SQL in DuckDB dialect over the source table's columns
    column: str | None = None  # the plain column, when the mapping is a column


@dataclass(frozen=True)
class Mapping:
    """Which table, which expression is ``user_id``, which become which properties.

    A ``--table`` mapping and a ``--query`` mapping end up in the same shape: one table,
    DuckDB-dialect expressions over its columns and an optional ``WHERE`` filter.
    """

    table: str
    user_id: str  # DuckDB SQL expression
    properties: tuple[PropertyMapping, ...]
    columns: tuple[str, ...]  # the table columns the expressions read
    where: str | None = None
    query: str | None = None  # the query as the user wrote it, if any

    @property
    def property_names(self) -> list[str]:
        return [p.name for p in self.properties]

    def to_json(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "user_id": self.user_id,
            "properties": [
                {"name": p.name, "expression": p.expression, "column": p.column}
                for p in self.properties
            ],
            "columns": list(self.columns),
            "where": self.where,
            "query": self.query,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Mapping:
        return cls(
            table=data["table"],
            user_id=data["user_id"],
            properties=tuple(PropertyMapping(**p) for p in data["properties"]),
            columns=tuple(data["columns"]),
            where=data.get("where"),
            query=data.get("query"),
        )


@dataclass(frozen=True)
class Checkpoint:
    """The warehouse position a source has synced up to, plus the table identity there.

    ``position`` is the kind's own notion (Delta version, Postgres LSN, Snowflake
    timestamp, DuckLake snapshot id) as text; ``identity`` detects drop-and-replace.
    """

    position: str
    identity: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"position": self.position, "identity": self.identity, "extra": self.extra}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Checkpoint | None:
        if not data:
            return None
        return cls(data["position"], data["identity"], data.get("extra") or {})


@dataclass(frozen=True)
class Source:
    """A connection + mapping + import strategy + name + frequency."""

    name: str
    connection: str
    mapping: Mapping
    strategy: Strategy = "cdc"
    frequency_seconds: int = DEFAULT_FREQUENCY_SECONDS
    data_type: str = "profiles"
    paused: bool = False
    id: int = 0
    checkpoint: Checkpoint | None = None
    created_at: datetime | None = None

    @property
    def profile_table(self) -> str:
        return f"profiles_{self.id}"


@dataclass
class SyncResult:
    """What one sync run did; printed by ``sync --json`` and kept in the run history."""

    source: str
    status: str = "running"  # success | failed
    mode: str = "incremental"  # initial | incremental | resync | diff
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    rejected: int = 0
    read: int = 0
    checkpoint: str | None = None
    previous_checkpoint: str | None = None
    error: str | None = None
    error_code: str | None = None
    run_id: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    #: the process's peak resident memory (ru_maxrss) when the sync ended: the peak of the
    #: whole process since it started, which bounds the sync's own from above
    peak_memory_bytes: int | None = None

    @property
    def operations(self) -> int:
        return self.inserted + self.updated + self.deleted

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "source": self.source,
            "status": self.status,
            "mode": self.mode,
            "inserted": self.inserted,
            "updated": self.updated,
            "deleted": self.deleted,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
            "read": self.read,
            "operations": self.operations,
            "checkpoint": self.checkpoint,
            "previous_checkpoint": self.previous_checkpoint,
            "error": self.error,
            "error_code": self.error_code,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "duration_seconds": self.duration_seconds,
            "peak_memory_bytes": self.peak_memory_bytes,
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def now() -> datetime:
    """The current moment in UTC: every time profilesync stores is timezone-aware."""
    return datetime.now(UTC)


def json_value(value: Any) -> Any:
    """Typed values for JSON: timestamps as ISO 8601 UTC, whole decimals as integers, other
    decimals as doubles; NaN and infinities are no value (None), as NULL is; lists and structs
    convert element by element."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        if not value.is_finite():
            return None
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: json_value(v) for k, v in value.items()}
    return value
