"""Monthly operation quotas per plan (calendar month, UTC)."""

from __future__ import annotations

from dataclasses import dataclass

from profilesync.errors import ConfigurationError, QuotaExceededError

PLANS = {"growth": 300_000_000, "enterprise": 1_000_000_000}
DEFAULT_PLAN = "growth"


@dataclass(frozen=True)
class Quota:
    """A plan and its limit; ``limit`` may be set lower than the plan's (tests, budgets)."""

    plan: str = DEFAULT_PLAN
    limit: int = PLANS[DEFAULT_PLAN]

    @classmethod
    def for_plan(cls, plan: str, limit: int | None = None) -> Quota:
        if plan not in PLANS:
            raise ConfigurationError(f"unknown plan {plan!r}: choose one of {', '.join(PLANS)}")
        return cls(plan, PLANS[plan] if limit is None else limit)

    def check(self, used: int, operations: int) -> None:
        """Refuse a sync whose net operations would take this month's usage past the limit."""
        forecast = used + operations
        if forecast > self.limit:
            raise QuotaExceededError(
                f"this sync needs {operations:,} operations; {used:,} of the {self.plan} plan's "
                f"{self.limit:,} monthly operations are used, so it would reach {forecast:,}. "
                "Nothing was applied. Wait for next month, narrow the source's mapping, or move "
                "to a larger plan (`profilesync config set plan enterprise`).",
                cli_fix="profilesync config set plan enterprise",
            )
