"""Moved to :mod:`profilesync.cli.sources`; this import path stays for one release."""

from profilesync.cli.sources import source_app

__all__ = ["source_app"]
