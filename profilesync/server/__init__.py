"""``profilesync serve``: the REST API, the web UI and the scheduler in one process.

``create_app(home)`` (in :mod:`profilesync.server.app`) builds the FastAPI application.
This module stays free of web imports. Which server owns a home is read by the store's
home (``server.json``, :func:`running_server`); this module writes and removes that file.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from profilesync.app.home import SERVER_FILE, describe, running_server

__all__ = ["SERVER_FILE", "describe", "remove_server_file", "running_server", "write_server_file"]


def write_server_file(home: Path, url: str) -> Path:
    """Announce this process as the owner of ``home`` (removed by :func:`remove_server_file`)."""
    path = Path(home) / SERVER_FILE
    doc = {"pid": os.getpid(), "url": url, "started_at": datetime.now(UTC).isoformat()}
    # private like every file in the home, whatever the process umask
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps(doc) + "\n")
    return path


def remove_server_file(home: Path) -> None:
    """Remove ``server.json`` if this process wrote it."""
    path = Path(home) / SERVER_FILE
    try:
        if int(json.loads(path.read_text())["pid"]) == os.getpid():
            path.unlink()
    except (OSError, ValueError, KeyError, TypeError):
        pass
