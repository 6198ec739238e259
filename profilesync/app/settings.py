"""Store settings: the plan, a lower monthly operations limit, a sync's memory limit, and
this month's usage."""

from __future__ import annotations

from typing import Any

from profilesync.app._engine import PLANS
from profilesync.app.home import Store
from profilesync.errors import ConfigurationError
from profilesync.model import MEMORY_LIMIT_SETTING, memory_limit, parse_memory_limit
from profilesync.store.protocol import QuotaPolicy as PlanQuota

SETTINGS = ("plan", "operations_limit", MEMORY_LIMIT_SETTING)


def quota(store: Store) -> PlanQuota:
    """The plan and the monthly limit in force."""
    return store.quota()


def set_setting(store: Store, key: str, value: str) -> PlanQuota:
    """Set ``plan`` (a plan's name) or ``operations_limit`` (a whole number up to the plan's
    own limit; ``default`` resets it); returns the quota now in force."""
    if key == "plan":
        if value not in PLANS:
            raise ConfigurationError(f"plan {value!r}: choose one of {', '.join(PLANS)}")
        store.set_setting("plan", value)
    elif key == "operations_limit":
        store.set_setting("operations_limit", _operations_limit(value, store.quota().plan))
    elif key == MEMORY_LIMIT_SETTING:
        stored = None if value.strip() == "default" else f"{parse_memory_limit(value)}B"
        store.set_setting(MEMORY_LIMIT_SETTING, stored)
    else:
        raise ConfigurationError(f"unknown setting {key!r}: {', '.join(SETTINGS)}")
    return store.quota()


def sync_memory_limit(store: Store) -> int:
    """Bytes a sync's transform and the store's queries may hold before spilling to disk
    (the store applies a new value from its next opening)."""
    return memory_limit(store.get_setting(MEMORY_LIMIT_SETTING))


def _operations_limit(value: str, plan: str) -> str | None:
    """``default`` (None) or a whole number from 1 to the plan's own limit, as stored."""
    if value == "default":
        return None
    ceiling = PLANS[plan]
    text = value.strip()
    whole = text.isascii() and text.isdigit() and len(text.lstrip("0")) <= 12
    if not whole or not 1 <= int(text) <= ceiling:
        shown = value if len(value) <= 30 else value[:27] + "..."
        raise ConfigurationError(
            f"operations_limit {shown!r} is not valid: give a whole number of operations from 1 "
            f"to {ceiling:,} (the {plan} plan's limit), or `default`"
        )
    return str(int(text))


def usage(store: Store, *, by_day: bool = False) -> dict[str, Any]:
    """Operations this month per source against the limit; ``by_day`` adds them per day."""
    doc = store.usage()
    if not by_day:
        return doc
    doc["days_by_source"] = store.usage_by_day_and_source()
    return doc
