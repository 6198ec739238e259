"""``profilesync serve``: the REST API, the web UI and the scheduler in one process.

``create_app(home)`` (in :mod:`profilesync.server.app`) builds the FastAPI application.
This module stays free of web imports: the store uses :func:`running_server` to name a
running server when the CLI finds the store file locked.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SERVER_FILE = "server.json"


def running_server(home: Path) -> dict[str, Any] | None:
    """``{"pid", "url", ...}`` of the ``serve`` process that owns ``home``, if it is alive."""
    path = Path(home) / SERVER_FILE
    try:
        info: dict[str, Any] = json.loads(path.read_text())
        pid = int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None  # a server that died without cleaning up
    except PermissionError:
        pass  # alive, owned by another user
    return info


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


def describe(info: dict[str, Any]) -> str:
    """``profilesync serve (PID 123) at http://127.0.0.1:8000``."""
    return f"`profilesync serve` (PID {info.get('pid')}) at {info.get('url')}"
