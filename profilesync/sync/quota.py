"""Moved to :mod:`profilesync.engine.quota`; kept for one release."""

from profilesync.engine.quota import DEFAULT_PLAN, PLANS, Quota

__all__ = ["DEFAULT_PLAN", "PLANS", "Quota"]
