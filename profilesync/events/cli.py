"""Moved to :mod:`profilesync.cli.events` and :mod:`profilesync.cli.query`; this import
path stays for one release."""

from profilesync.cli.events import events_app, projects_app
from profilesync.cli.query import parse_filter, query_app

__all__ = ["events_app", "parse_filter", "projects_app", "query_app"]
