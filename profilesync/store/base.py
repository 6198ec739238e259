"""Replaced by :mod:`profilesync.store.protocol`; these aliases stay for one release."""

from profilesync.store.protocol import QuotaPolicy as Quota
from profilesync.store.protocol import Store as ProfileStore

__all__ = ["ProfileStore", "Quota"]
