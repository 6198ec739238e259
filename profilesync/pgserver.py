"""A throwaway local PostgreSQL server for the demo and the test suite.

It runs Debian's ``postgresql-15`` binaries (``initdb`` + ``pg_ctl``) on a data directory
of its own, listening on a free port of 127.0.0.1 with trust authentication and
``wal_level = logical`` so that replication slots (and ``wal2json``) work. The server
refuses to run as root; under root it runs as the ``postgres`` system user that the
Debian package creates.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from profilesync.errors import ConfigurationError

DEFAULT_BIN = "/usr/lib/postgresql/15/bin"
#: the superuser initdb creates (also the user the DSN connects as)
SUPERUSER = "postgres"
#: settings for a disposable server: logical decoding on, no fsync (commits stay synchronous,
#: so a committed change is in the WAL that logical decoding reads)
SETTINGS = {
    "wal_level": "logical",
    "max_replication_slots": "64",
    "max_wal_senders": "16",
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "full_page_writes": "off",
    "shared_buffers": "128MB",
    "max_connections": "100",
}
INSTALL_HINT = (
    "PostgreSQL 15 with wal2json is needed: run `make sysdeps` "
    "(Debian packages postgresql-15 and postgresql-15-wal2json)"
)


def bin_dir() -> Path:
    """Where initdb and pg_ctl are (``PROFILESYNC_PG_BIN`` overrides Debian's path)."""
    return Path(os.environ.get("PROFILESYNC_PG_BIN", DEFAULT_BIN))


def missing_binaries() -> list[str]:
    """The server programs or the wal2json plugin that are not installed."""
    bins = bin_dir()
    missing = [str(bins / n) for n in ("initdb", "pg_ctl", "postgres") if not (bins / n).exists()]
    plugin = bins.parent / "lib" / "wal2json.so"
    if not plugin.exists():
        missing.append(str(plugin))
    return missing


@dataclass
class PgServer:
    """A running server; ``dsn`` connects as the superuser to database ``postgres``."""

    data_dir: Path
    port: int
    run_as: str | None  # system user the server runs as (None: the current user)

    @property
    def socket_dir(self) -> Path:
        return self.data_dir.parent

    @property
    def log_file(self) -> Path:
        return self.data_dir.parent / "server.log"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname={dbname}"

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions are disconnected)."""
        _run(
            self.run_as,
            [str(bin_dir() / "pg_ctl"), "-D", str(self.data_dir), "stop", "-m", "fast", "-w"],
            cwd=self.socket_dir,
            check=False,
        )


def start(parent: Path | None = None) -> PgServer:
    """Initialise and start a server in ``parent`` (a new temporary directory if None).

    Raises ConfigurationError naming ``make sysdeps`` when the binaries are missing.
    """
    missing = missing_binaries()
    if missing:
        raise ConfigurationError(f"{INSTALL_HINT}; missing: {', '.join(missing)}")
    run_as = _server_user()
    base = _usable_dir(parent, run_as)
    data = base / "data"
    _run(
        run_as,
        [
            str(bin_dir() / "initdb"),
            "-D",
            str(data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
        ],
        cwd=base,
    )
    for attempt in range(5):
        port = _free_port()
        _write_settings(data, port, base)
        server = PgServer(data, port, run_as)
        result = _run(
            run_as,
            [
                str(bin_dir() / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(server.log_file),
                "-w",
                "-t",
                "60",
                "start",
            ],
            cwd=base,
            check=False,
        )
        if result.returncode == 0:
            return server
        if attempt == 4 or "could not bind" not in _tail(server.log_file):
            raise ConfigurationError(
                f"PostgreSQL did not start (pg_ctl exit {result.returncode}): "
                f"{result.stderr.strip() or _tail(server.log_file)}"
            )
    raise AssertionError("unreachable")


def _server_user() -> str | None:
    """None when we may run the server ourselves; under root, the ``postgres`` system user."""
    if os.geteuid() != 0:
        return None
    try:
        import pwd

        pwd.getpwnam(SUPERUSER)
    except KeyError:
        raise ConfigurationError(
            f"running as root, PostgreSQL needs the system user {SUPERUSER!r} to run as: {INSTALL_HINT}"
        ) from None
    return SUPERUSER


def _usable_dir(parent: Path | None, run_as: str | None) -> Path:
    """A directory the server's user owns; under root a parent it cannot reach is swapped
    for a fresh one under the system temporary directory."""
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
        base = parent.resolve()
        if run_as is None or _reachable(base, run_as):
            _chown(base, run_as)
            return base
    base = Path(tempfile.mkdtemp(prefix="profilesync-pg-"))
    _chown(base, run_as)
    return base


def _reachable(path: Path, user: str) -> bool:
    _chown(path, user)
    check = ["test", "-w", str(path), "-a", "-x", str(path)]
    return _run(user, check, cwd=Path("/"), check=False).returncode == 0


def _chown(path: Path, user: str | None) -> None:
    if user is not None:
        shutil.chown(path, user, user)


def _write_settings(data: Path, port: int, socket_dir: Path) -> None:
    lines = [f"{k} = {v}" for k, v in SETTINGS.items()]
    lines += [f"port = {port}", f"unix_socket_directories = '{socket_dir}'"]
    # appended lines win over initdb's; postgresql.auto.conf stays the server's own file
    # (ALTER SYSTEM writes it), so ownership is left alone
    with (data / "postgresql.conf").open("a") as conf:
        conf.write("\n# profilesync\n" + "\n".join(lines) + "\n")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _run(
    user: str | None, argv: list[str], *, cwd: Path, check: bool = True
) -> subprocess.CompletedProcess[str]:
    program = Path(argv[0]).name
    if user is not None:
        argv = ["runuser", "-u", user, "--", *argv]
    # cwd must be readable by the server's user: initdb and postgres look it up
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise ConfigurationError(
            f"{program} failed: {(result.stderr or result.stdout).strip()[-2000:]}"
        )
    return result


def _tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""
