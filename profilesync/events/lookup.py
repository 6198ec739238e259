"""Moved to :mod:`profilesync.query.lookup`; this import path stays for one release."""

from profilesync.events.query import user_lookup
from profilesync.query.lookup import UNREADABLE

__all__ = ["UNREADABLE", "user_lookup"]
