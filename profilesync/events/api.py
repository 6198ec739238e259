"""Moved to :mod:`profilesync.server.events`; this import path stays for one release."""

from profilesync.server.events import (
    CORS,
    FRESH_SECONDS,
    NAV,
    PROJECT_NOTICES,
    NewProject,
    pages,
    router,
    run_segmentation,
)
from profilesync.server.queryforms import FILTER_ROWS

__all__ = [
    "CORS",
    "FILTER_ROWS",
    "FRESH_SECONDS",
    "NAV",
    "PROJECT_NOTICES",
    "NewProject",
    "pages",
    "router",
    "run_segmentation",
]
