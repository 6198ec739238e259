"""The home directory and the store file in it: created private, opened with clear errors.

A home holds profiles, the admin token hash and encrypted connection secrets, so it is
created 0700 and every file profilesync keeps in it 0600. A directory that existed
before and holds files of the user's own keeps its mode (it is theirs, perhaps shared on
purpose); profilesync's files in it are tightened all the same.

DuckDB reports a full disk, a read-only home, a corrupted file and a file held by another
process as exceptions with a message only: :func:`store_error` turns those messages into
the errors a user can act on, for the store and for the command line's last resort.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from profilesync.errors import (
    ConfigurationError,
    HomeNotWritableError,
    ProfilesyncError,
    StoreBusyError,
    StoreCorruptedError,
    StoreFullError,
)

STORE_FILE = "profilesync.duckdb"
#: written by ``profilesync serve`` into the home it serves: its PID and URL
SERVER_FILE = "server.json"
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
#: what profilesync keeps in a home; a directory holding nothing else is profilesync's own
OWN_FILES = frozenset(
    {STORE_FILE, f"{STORE_FILE}.wal", f"{STORE_FILE}.tmp", "secret.key", SERVER_FILE}
)
OWN_DIRS = frozenset({"locks", "tmp", "clickhouse"})  # clickhouse: the chdb store's data

_FULL = ("no space left on device", "disk is full", "disk full")
_DENIED = ("permission denied", "read-only file system", "operation not permitted")
_CORRUPT = (
    "corrupt database file",
    "not a valid duckdb database file",
    "could not read enough bytes from file",
)
_LOCKED = "could not set lock on file"


@contextmanager
def private_files() -> Iterator[None]:
    """Files created inside the block are private to this user (umask 077).

    The umask is process-wide: a file another thread creates meanwhile is private too,
    which errs on the safe side.
    """
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def prepare_home(home: Path) -> None:
    """Create ``home`` 0700 (its parent must exist) and tighten what profilesync keeps in it.

    The parent must exist so that a mistyped ``--home`` is refused instead of growing a
    tree of directories somewhere unexpected.
    """
    if not home.exists():
        parent = home.absolute().parent
        if not parent.is_dir():
            raise ConfigurationError(
                f"cannot create the home {home}: its parent directory {parent} does not exist. "
                "Create it first, or choose another --home (or PROFILESYNC_HOME)"
            )
        try:
            home.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:
            pass  # another process made it first
        except OSError as exc:  # the directory that refused is the parent
            raise _as_error(exc, home, parent) from None
    elif not home.is_dir():
        raise ConfigurationError(
            f"the home {home} is a file, not a directory: choose another --home (or PROFILESYNC_HOME)"
        )
    tighten(home)


def tighten(home: Path) -> None:
    """Private modes on profilesync's files, and on the home when nothing else is in it."""
    try:
        entries = list(home.iterdir())
    except OSError as exc:
        raise _as_error(exc, home) from None
    ours = True
    for entry in entries:
        if entry.name in OWN_FILES:
            _restrict(entry, PRIVATE_FILE)
        elif entry.name in OWN_DIRS and entry.is_dir():
            _restrict(entry, PRIVATE_DIR)
            for item in entry.iterdir():
                _restrict(item, PRIVATE_DIR if item.is_dir() else PRIVATE_FILE)
        else:
            ours = False
    if ours:
        _restrict(home, PRIVATE_DIR)


def _restrict(path: Path, mode: int) -> None:
    """Drop group and other permissions of a path this user owns; leave others' paths be."""
    try:
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode) or info.st_uid != os.geteuid():
            return
        if stat.S_IMODE(info.st_mode) & 0o077:
            path.chmod(stat.S_IMODE(info.st_mode) & mode)
    except OSError:
        pass  # best effort: a read-only home is reported when something must be written


def connect(path: Path, wait_seconds: float) -> duckdb.DuckDBPyConnection:
    """Open the store file (created 0600), waiting a little while another process holds it."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            with private_files():
                return duckdb.connect(str(path))
        except duckdb.Error as exc:
            if _LOCKED not in str(exc).lower():
                raise store_error(exc, path.parent) or ProfilesyncError(
                    f"cannot open the store {path}: {exc}"
                ) from exc
            server = _server(path.parent)
            if server:
                raise StoreBusyError(
                    f"the store {path} is in use by {server}: use the web UI or the REST API "
                    "there (e.g. POST /api/sources/NAME/sync), or stop the server first"
                ) from exc
            if time.monotonic() >= deadline:
                raise StoreBusyError(
                    f"the store {path} is in use by another profilesync process "
                    f"({_holder(str(exc))}), probably a running sync or `profilesync serve`: "
                    "try again when it finishes, or send the command to the server"
                ) from exc
            time.sleep(0.1)


def _holder(message: str) -> str:
    """``PID 123`` from DuckDB's lock message, when it names one."""
    if "(PID " not in message:
        return "PID unknown"
    return "PID " + message.split("(PID ")[-1].split(")")[0]


def _server(home: Path) -> str | None:
    """The running ``profilesync serve`` that owns ``home``, named for error messages."""
    info = running_server(home)
    return describe(info) if info else None


def running_server(home: Path) -> dict[str, Any] | None:
    """``{"pid", "url", ...}`` of the ``serve`` process that owns ``home``, if it is alive
    (it writes :data:`SERVER_FILE` in the home when it starts)."""
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


def describe(info: dict[str, Any]) -> str:
    """``profilesync serve (PID 123) at http://127.0.0.1:8000``."""
    return f"`profilesync serve` (PID {info.get('pid')}) at {info.get('url')}"


def store_error(exc: BaseException, home: Path | str | None) -> ProfilesyncError | None:
    """The error a user can act on for a DuckDB or OS failure under ``home``, if it is one.

    None when ``exc`` is none of: a full disk, a path this user cannot write, a corrupted
    store file. Those are the environment's doing, not a bug, and each has a fix to name.
    """
    if isinstance(exc, ProfilesyncError) or not isinstance(exc, OSError | duckdb.Error):
        return None
    message = str(exc).lower()
    number = exc.errno if isinstance(exc, OSError) else None
    where = Path(home) if home is not None else Path(".")
    if number == errno.ENOSPC or any(m in message for m in _FULL):
        return StoreFullError(
            f"no space left on the device holding {where}: what this command was writing was "
            "not saved. Free space there (or move the home with --home) and run it again"
        )
    if number in (errno.EACCES, errno.EPERM, errno.EROFS) or any(m in message for m in _DENIED):
        return _as_error(exc, where)
    if any(m in message for m in _CORRUPT):
        store = where / STORE_FILE
        return StoreCorruptedError(
            f"the store {store} is corrupted ({first_line(str(exc))}). Restore it from a "
            f"backup copy, or move it aside (mv {store} {store}.broken) to start with an "
            "empty store and add the connections and sources again"
        )
    return None


def _as_error(
    exc: OSError | duckdb.Error, home: Path, path: Path | str | None = None
) -> ProfilesyncError:
    """A failure to create or write under ``home``: which path, and what to do."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return store_error(exc, home) or StoreFullError(str(exc))
    if path is None:
        path = exc.filename if isinstance(exc, OSError) and exc.filename else _quoted_path(exc)
    return HomeNotWritableError(
        f"{path or home} is not writable by this user (uid {os.geteuid()}): make the home "
        "writable for it (chmod/chown), or choose another --home (or PROFILESYNC_HOME)"
    )


def _quoted_path(exc: BaseException) -> str | None:
    """The first double-quoted path in a DuckDB message (``Cannot open file "/x": ...``)."""
    parts = str(exc).split('"')
    return parts[1] if len(parts) >= 3 else None


def first_line(text: str) -> str:
    """The first line of a driver's message, cut to fit in a one-line error."""
    line = text.strip().splitlines()[0] if text.strip() else text
    return line if len(line) <= 160 else line[:157] + "..."
