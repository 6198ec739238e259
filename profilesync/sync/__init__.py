"""Moved to :mod:`profilesync.engine`; this package re-exports it for one release."""
