"""Moved to :mod:`profilesync.cli.connections`; this import path stays for one release."""

from profilesync.cli.connections import config_app, connection_app

__all__ = ["config_app", "connection_app"]
