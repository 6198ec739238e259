"""One sync per source at a time, across threads and processes."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from profilesync.errors import ConcurrentSyncError


class _HasHome(Protocol):
    @property
    def home(self) -> Path: ...


@contextmanager
def source_lock(home: Path | str | _HasHome, name: str) -> Iterator[None]:
    """Two syncs of one source never overlap, across threads and processes (``flock``).

    ``home`` is the store's home directory, or a store (its ``home``); the lock file
    ``<home>/locks/<name>.lock`` holds the PID of the sync that has it.
    """
    base = Path(home) if isinstance(home, Path | str) else home.home
    locks = base / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    path = locks / f"{name.replace('/', '_')}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise ConcurrentSyncError(
                f"a sync of source {name!r} is already running (PID {holder}): wait for it to finish; "
                "a source never syncs twice at once"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)
