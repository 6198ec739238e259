"""Moved to :mod:`profilesync.demo.events`; this import path stays for one release."""

from profilesync.demo.events import add_demo_events, as_events, generate

__all__ = ["add_demo_events", "as_events", "generate"]
