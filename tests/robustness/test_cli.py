"""Bad input to the real ``profilesync`` entry point: each is refused cleanly, nothing changes.

Usage errors (a missing argument, an unknown option or command, an option without its
value) exit 2 with click's usage text; every other refusal exits 1 with one line naming
the cause and the fix. The environment's failures (a full disk, a read-only home, a
corrupted store) are named as such, never as "unexpected".
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from tests.conftest import Cli, Warehouse, entry_point, users_table
from tests.robustness.conftest import assert_cli_refused, store_state


@pytest.fixture
def synced(tmp_path: Path) -> Cli:
    """A home with a Delta connection ``lake``, a source ``users`` and one sync done."""
    warehouse = Warehouse(tmp_path / "lake")
    warehouse.create("prod.users", users_table(5))
    cli = Cli(tmp_path / "home", tmp_path)
    cli.ok("connection", "add", "lake", "--kind", "delta", "--path", str(warehouse.root))
    cli.ok(
        "source", "add", "users", "--connection", "lake", "--table", "prod.users",
        "--user-id", "uid", "--property", "title",
    )  # fmt: skip
    cli.ok("sync", "users")
    return cli


# -- usage errors: exit 2 with the usage text ----------------------------------------------

USAGE = [
    pytest.param(["sync"], "Missing argument", id="sync-without-name"),
    pytest.param(["--bogus", "usage"], "No such option", id="unknown-global-option"),
    pytest.param(["sync", "users", "--bogus"], "No such option", id="unknown-option"),
    pytest.param(["nosuch"], "No such command", id="unknown-command"),
    pytest.param(["source", "frobnicate"], "No such command", id="unknown-subcommand"),
    pytest.param(["source", "add", "x", "--connection"], "requires an argument", id="no-value"),
    pytest.param(["runs", "users", "--limit", "many"], "Invalid value", id="bad-int"),
    pytest.param(["connection", "add", "x"], "Missing option", id="missing-required-option"),
]


@pytest.mark.parametrize(("args", "words"), USAGE)
def test_usage_errors_exit_2_with_usage(synced: Cli, args: list[str], words: str) -> None:
    before = store_state(synced.home)
    proc = synced(*args)
    text = assert_cli_refused(proc, code=2)
    assert words in text, text
    assert "Usage:" in text or "Error:" in text
    assert store_state(synced.home) == before


# -- bad values: exit 1, one line ---------------------------------------------------------

FREQUENCIES = ["0", "-5", str(2**63 + 1), "1" + "0" * 30, "1x", "366d", "1.5h", "9" * 5000]


@pytest.mark.parametrize("frequency", FREQUENCIES, ids=lambda f: f[:24])
def test_bad_frequency_is_refused(synced: Cli, frequency: str) -> None:
    before = store_state(synced.home)
    proc = synced(
        "source", "add", "other", "--connection", "lake", "--table", "prod.users",
        "--user-id", "uid", "--property", "score", f"--frequency={frequency}",
    )  # fmt: skip
    line = assert_cli_refused(proc, "frequency")
    assert any(w in line for w in ("365d", "1m", "30m")), line
    assert len(line) < 300, line
    assert store_state(synced.home) == before


BAD_NAMES = ["", "   ", "a b", "a/b", "../up", "-dash", "x\u202ey", "tab\tname", "é" * 3, "n" * 300]


@pytest.mark.parametrize("name", BAD_NAMES, ids=lambda n: repr(n)[:20])
def test_bad_source_and_connection_names_are_refused(synced: Cli, name: str) -> None:
    before = store_state(synced.home)
    source = synced(
        "source", "add", "--connection", "lake", "--table", "prod.users",
        "--user-id", "uid", "--property", "score", "--", name,
    )  # fmt: skip
    line = assert_cli_refused(source, "source name", "letters, digits")
    assert len(line) < 300, line
    connection = synced("connection", "add", "--kind", "delta", "--path", "/x", "--", name)
    assert_cli_refused(connection, "connection name", "letters, digits")
    assert store_state(synced.home) == before


CONFIG = [
    (["operations_limit", "-5"], "operations_limit"),
    (["operations_limit", "0"], "operations_limit"),
    (["operations_limit", "ten"], "whole number"),
    (["operations_limit", "1" + "0" * 30], "300,000,000"),
    (["plan", "free"], "choose one of"),
    (["colour", "blue"], "unknown setting"),
]


@pytest.mark.parametrize(("args", "word"), CONFIG, ids=[" ".join(a)[:30] for a, _ in CONFIG])
def test_bad_config_values_exit_1(synced: Cli, args: list[str], word: str) -> None:
    before = store_state(synced.home)
    assert_cli_refused(synced("config", "set", *args), word)
    assert synced.json("config", "get")["operations_limit"] == 300_000_000
    assert store_state(synced.home) == before


UNKNOWN = [
    (["sync", "nosuch"], "no source named"),
    (["runs", "nosuch"], "no source named"),
    (["source", "delete", "nosuch"], "no source named"),
    (["source", "test", "nosuch"], "no source named"),
    (["connection", "delete", "nosuch"], "no connection named"),
    (["connection", "tables", "nosuch"], "no connection named"),
    (["source", "add", "x", "--connection", "nosuch", "--table", "t"], "no connection named"),
]


@pytest.mark.parametrize(("args", "word"), UNKNOWN, ids=[" ".join(a)[:30] for a, _ in UNKNOWN])
def test_unknown_names_are_refused(synced: Cli, args: list[str], word: str) -> None:
    before = store_state(synced.home)
    assert_cli_refused(synced(*args), word, "list")
    assert store_state(synced.home) == before


def test_unreachable_postgres_connection_is_not_saved(synced: Cli) -> None:
    """Nothing listens on port 1: refused and not saved, unless --save-anyway says so."""
    before = store_state(synced.home)
    dsn = "postgresql://nobody@127.0.0.1:1/nothing?connect_timeout=3"
    args = ["connection", "add", "pg", "--kind", "postgres", "--dsn", dsn]
    assert_cli_refused(synced(*args), "not saved", "--save-anyway")
    assert store_state(synced.home) == before
    synced.ok(*args, "--save-anyway")
    assert "pg" in [c["name"] for c in synced.json("connection", "list")]


# -- the home and the store file ------------------------------------------------------------


def test_missing_home_parent_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "no" / "such" / "home"
    assert_cli_refused(Cli(home, tmp_path)("config", "get"), "parent directory", "--home")
    assert not (tmp_path / "no").exists()


def test_home_that_is_a_file_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "file"
    home.write_text("not a directory")
    assert_cli_refused(Cli(home, tmp_path)("config", "get"), "not a directory", "--home")


def test_corrupted_store_is_named_at_once(synced: Cli) -> None:
    store = synced.home / "profilesync.duckdb"
    with store.open("r+b") as f:
        f.seek(4096)
        f.write(os.urandom(8192))
    started = time.monotonic()
    line = assert_cli_refused(synced("source", "list"), "corrupted", str(store), "backup", "mv")
    assert "in use" not in line
    assert time.monotonic() - started < 8  # no 10 s wait for a lock nobody holds


def test_home_files_are_private(synced: Cli) -> None:
    """The home is 0700 and what profilesync writes in it 0600: profiles, secrets, locks."""
    assert stat.S_IMODE(synced.home.stat().st_mode) == 0o700
    made = [p for p in synced.home.rglob("*")]
    assert any(p.name == "profilesync.duckdb" for p in made)
    for path in made:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, (path, oct(mode))


def test_existing_home_modes(tmp_path: Path) -> None:
    """A directory of the user's own keeps its mode; profilesync's own home is tightened."""
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    (shared / "notes.txt").write_text("the user's")
    shared.chmod(0o755)
    Cli(shared, tmp_path).ok("config", "get")
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755
    assert stat.S_IMODE((shared / "profilesync.duckdb").stat().st_mode) == 0o600
    loose = tmp_path / "loose"
    loose.mkdir()
    Cli(loose, tmp_path).ok("config", "get")
    loose.chmod(0o755)
    (loose / "profilesync.duckdb").chmod(0o644)
    Cli(loose, tmp_path).ok("config", "get")
    assert stat.S_IMODE(loose.stat().st_mode) == 0o700
    assert stat.S_IMODE((loose / "profilesync.duckdb").stat().st_mode) == 0o600


@pytest.fixture
def world_dir() -> Iterator[Path]:
    """A directory another user can reach (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="profilesync-ro-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _as_nobody(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run the CLI as another user (root ignores modes)")
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    command = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
    return subprocess.run(
        [*command, *entry_point(), "--home", str(home), *args],
        capture_output=True, text=True, env=env, cwd=home.parent, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("with_store", [False, True], ids=["empty-home", "home-with-store"])
def test_read_only_home_names_the_path(world_dir: Path, with_store: bool) -> None:
    home = world_dir / "home"
    home.mkdir()
    if with_store:
        duckdb.connect(str(home / "profilesync.duckdb")).close()
    home.chmod(0o755)  # owned by root: read-only for user nobody
    before = store_state(home)
    proc = _as_nobody(home, "config", "set", "plan", "enterprise")
    if proc.returncode != 0 and "Permission denied" in proc.stderr and "python" in proc.stderr:
        pytest.skip("user nobody cannot run this interpreter")
    assert_cli_refused(proc, "not writable", str(home), "--home")
    assert store_state(home) == before


# -- a full disk ----------------------------------------------------------------------------


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A 8 MB tmpfs, unmounted afterwards; skipped where mounting is not permitted."""
    mount = Path(tempfile.mkdtemp(prefix="profilesync-tmpfs-"))
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if made.returncode != 0:
        mount.rmdir()
        pytest.skip(f"cannot mount a tmpfs here (needs root): {made.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        mount.rmdir()


def _fill(path: Path) -> None:
    """Write zeros to ``path`` until the device is full."""
    with path.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


def test_full_disk_is_named_and_run_ids_stay_unique(tmp_path: Path, small_disk: Path) -> None:
    warehouse = Warehouse(tmp_path / "lake")
    warehouse.create("prod.users", users_table(2000))
    cli = Cli(small_disk / "home", tmp_path)
    cli.ok("connection", "add", "lake", "--kind", "delta", "--path", str(warehouse.root))
    cli.ok(
        "source", "add", "users", "--connection", "lake", "--table", "prod.users",
        "--user-id", "uid", "--property", "title",
    )  # fmt: skip
    cli.ok("sync", "users")
    warehouse.append("prod.users", users_table(20_000, start=200_000))
    _fill(small_disk / "filler")
    before = store_state(cli.home)
    for _ in range(2):
        proc = cli("sync", "users")
        assert_cli_refused(proc, "no space left", str(cli.home), "free space")
    # Nothing of the sync is applied. Its failure is recorded when the file still has room
    # for one small row (a run and the source's alert state), depending on free blocks.
    history = ("runs", "alert_state")
    after = store_state(cli.home)
    assert {k: v for k, v in after.items() if k not in history} == {
        k: v for k, v in before.items() if k not in history
    }
    new_runs = [json.loads(r) for r in after["runs"] if r not in before["runs"]]
    assert all(r[4] == "failed" and r[15] == "store_full" for r in new_runs), new_runs
    (small_disk / "filler").unlink()
    for _ in range(3):
        cli.ok("sync", "users")
    ids = [r["id"] for r in cli.json("runs", "users")]
    assert len(ids) == len(set(ids)) and ids == sorted(ids, reverse=True), ids


def test_ids_follow_the_tables_not_a_sequence(synced: Cli) -> None:
    """Measured: after a commit refused by a full disk, a DuckDB sequence came back below the
    ids already stored and the next run failed on a duplicate key. Set one back by hand."""
    con = duckdb.connect(str(synced.home / "profilesync.duckdb"))
    con.execute("CREATE OR REPLACE SEQUENCE run_ids START 1")
    con.execute("CREATE OR REPLACE SEQUENCE source_ids START 1")
    con.close()
    synced.ok("sync", "users")
    synced.ok(
        "source", "add", "scores", "--connection", "lake", "--table", "prod.users",
        "--user-id", "uid", "--property", "score",
    )  # fmt: skip
    synced.ok("sync", "scores")
    assert [r["id"] for r in synced.json("runs", "users")] == [2, 1]
    assert [r["id"] for r in synced.json("runs", "scores")] == [3]
