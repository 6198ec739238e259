"""Bad-input corpus, warehouse side: Delta tables in states a real lake gets into.

Each case breaks a real Delta table (or names one badly) under a real connection and runs
the real ``profilesync`` entry point: the command fails with exit code 1 and one
``error: ...`` line naming the cause and the fix, never an internal error, and the store
is as it was (profiles, checkpoint and metered usage; a failed sync adds only its own
line to the run history).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from deltalake import write_deltalake

from tests.conftest import Cli, Warehouse, entry_point, users_table
from tests.robustness.conftest import assert_api_refused, assert_cli_refused, store_state

NOBODY = 65534
ADD = ("source", "add", "users", "--connection", "lake", "--table", "prod.users",
       "--user-id", "uid", "--property", "title=Title")  # fmt: skip


@pytest.fixture
def lake(tmp_path: Path, cli: Cli) -> Warehouse:
    """``prod.users`` with five users (change data feed on), source ``users``, first sync."""
    return _synced(Warehouse(tmp_path / "lake"), cli)


def _synced(lake: Warehouse, cli: Cli) -> Warehouse:
    lake.create("prod.users", users_table(5))
    cli.ok("connection", "add", "lake", "--kind", "delta", "--path", str(lake.root))
    cli.ok(*ADD, "--no-check")
    cli.ok("sync", "users")
    return lake


def _without_runs(state: dict[str, Any]) -> dict[str, Any]:
    """The state minus the run history: the failed run and the source's alert state
    (failed or stopped, kept so that its alert is sent once and its recovery noticed)."""
    return {k: v for k, v in state.items() if k not in ("runs", "alert_state")}


def sync_refused(
    cli: Cli, *words: str, resync: bool = False, run: Any = None, home: Path | None = None
) -> str:
    """``sync users`` fails cleanly and changes nothing but one failed, non-internal run."""
    home = home or cli.home
    before = store_state(home)
    args = ("sync", "users", *(("--resync",) if resync else ()))
    line = assert_cli_refused((run or cli)(*args), *words)
    after = store_state(home)
    assert _without_runs(after) == _without_runs(before)
    assert all(
        '"source:users"' in s for s in set(after["alert_state"]) - set(before["alert_state"])
    )
    new_runs = sorted(set(after["runs"]) - set(before["runs"]))
    assert len(new_runs) == 1 and '"failed"' in new_runs[0], new_runs
    assert '"internal"' not in new_runs[0], new_runs
    return line


def add_refused(cli: Cli, table: str, *words: str) -> str:
    before = store_state(cli.home)
    line = assert_cli_refused(
        cli(
            "source",
            "add",
            "x",
            "--connection",
            "lake",
            "--table",
            table,
            "--user-id",
            "uid",
            "--no-check",
        ),
        *words,
    )
    assert store_state(cli.home) == before
    return line


def profiles_in(cli: Cli) -> dict[str, dict[str, Any]]:
    lines = cli.ok("profile", "export").stdout.splitlines()
    return {p["user_id"]: p["properties"] for p in map(json.loads, lines)}


def table_profiles(lake: Warehouse) -> dict[str, dict[str, Any]]:
    rows = lake.rows("prod.users")
    return {str(r["uid"]): {"Title": r["title"]} for r in rows if r["title"] is not None}


def log_entry(lake: Warehouse, version: int) -> Path:
    return Path(lake.path("prod.users"), "_delta_log", f"{version:020d}.json")


def retitle(lake: Warehouse, uid: int, title: str) -> None:
    lake.update("prod.users", f"uid = {uid}", {"title": f"'{title}'"})


# -- table names stay inside the connection ---------------------------------------------


def test_an_absolute_table_path_is_refused(lake: Warehouse, cli: Cli, tmp_path: Path) -> None:
    other = Warehouse(tmp_path / "elsewhere")
    other.create("prod.users", users_table(2))
    add_refused(cli, other.path("prod.users"), "not a table name", "prod.users is", "absolute")


def test_dot_dot_in_a_table_name_is_refused(lake: Warehouse, cli: Cli, tmp_path: Path) -> None:
    Warehouse(tmp_path / "elsewhere").create("prod.users", users_table(2))
    add_refused(cli, "..elsewhere.prod.users", "not a table name", "'..'")


def test_a_path_separator_in_a_table_name_is_refused(lake: Warehouse, cli: Cli) -> None:
    add_refused(cli, "prod/users", "not a table name", "dots for slashes")


def test_a_symlink_leading_outside_the_connection_is_refused(
    lake: Warehouse, cli: Cli, tmp_path: Path
) -> None:
    other = Warehouse(tmp_path / "elsewhere")
    other.create("prod.users", users_table(2))
    os.symlink(other.path("prod.users"), Path(lake.path("prod.users")).parent / "evil")
    add_refused(cli, "prod.evil", "symbolic link", "outside", "prod.users is")


def test_a_symlink_inside_the_connection_is_a_table(lake: Warehouse, cli: Cli) -> None:
    os.symlink(lake.path("prod.users"), Path(lake.path("prod.users")).parent / "alias")
    cli.ok("source", "add", "alias", "--connection", "lake", "--table", "prod.alias",
           "--user-id", "uid", "--property", "title=Alias Title", "--no-check")  # fmt: skip


def test_the_api_refuses_an_absolute_table_path(tmp_path: Path) -> None:
    from tests.server.conftest import serving

    lake, other = Warehouse(tmp_path / "lake"), Warehouse(tmp_path / "elsewhere")
    lake.create("prod.users", users_table(2))
    other.create("prod.users", users_table(2))
    home = tmp_path / "home"
    Cli(home, tmp_path).ok("connection", "add", "lake", "--kind", "delta", "--path", str(lake.root))
    before = _synced_data(store_state(home))
    body = {
        "connection": "lake",
        "name": "x",
        "table": other.path("prod.users"),
        "user_id": "uid",
        "properties": [{"column": "title", "name": "T"}],
    }
    with serving(home) as served:
        for path in ("/api/sources/test", "/api/sources"):
            assert_api_refused(served.api.post(path, json=body), "not a table name", "prod.users")
        assert served.api.get("/api/sources").json() == []
    assert _synced_data(store_state(home)) == before


def _synced_data(state: dict[str, Any]) -> dict[str, Any]:
    """What a source can change (the server's own sign-in tables aside)."""
    keep = ("sources", "runs", "usage", "rejected_rows")
    return {k: v for k, v in state.items() if k in keep or k.startswith("profiles_")}


# -- a damaged table ----------------------------------------------------------------------


def test_a_truncated_log_entry(lake: Warehouse, cli: Cli) -> None:
    retitle(lake, 10001, "x")
    entry = log_entry(lake, 1)
    entry.write_bytes(entry.read_bytes()[:200])
    sync_refused(cli, "00000000000000000001.json", "not valid JSON", "restore")


def test_a_garbage_log_entry(lake: Warehouse, cli: Cli) -> None:
    retitle(lake, 10001, "x")
    log_entry(lake, 1).write_text("<html>502 Bad Gateway</html>\n")
    sync_refused(cli, "00000000000000000001.json", "not valid JSON", "restore")


def test_a_log_entry_missing_in_the_middle(lake: Warehouse, cli: Cli) -> None:
    for uid in (10001, 10002, 10003):
        retitle(lake, uid, "x")
    log_entry(lake, 2).unlink()
    sync_refused(cli, "missing commit files", "restore")


def _delete_data_files(lake: Warehouse) -> None:
    table = Path(lake.path("prod.users"))
    for file in [*table.glob("*.parquet"), *table.glob("_change_data/*")]:
        file.unlink()


def test_data_files_deleted_then_an_incremental_sync(lake: Warehouse, cli: Cli) -> None:
    retitle(lake, 10001, "x")
    _delete_data_files(lake)
    sync_refused(cli, "no longer retained", "deleted outside Delta", "--resync")


def test_data_files_deleted_then_a_resync(lake: Warehouse, cli: Cli) -> None:
    retitle(lake, 10001, "x")
    _delete_data_files(lake)
    sync_refused(cli, ".parquet", "is missing", "restore the file", resync=True)


def test_the_table_path_replaced_by_a_file(lake: Warehouse, cli: Cli) -> None:
    shutil.rmtree(lake.path("prod.users"))
    Path(lake.path("prod.users")).write_text("not a table\n")
    sync_refused(cli, "is a file, not a Delta table directory", "restore the table")


def test_the_table_directory_removed(lake: Warehouse, cli: Cli) -> None:
    shutil.rmtree(lake.path("prod.users"))
    sync_refused(cli, "'prod.users' not found", "restore it")


def test_a_column_changed_from_string_to_struct(lake: Warehouse, cli: Cli) -> None:
    table = users_table(5)
    table = table.set_column(1, "title", pa.array([{"first": f"t{i}"} for i in range(5)]))
    write_deltalake(lake.path("prod.users"), table, mode="overwrite", schema_mode="overwrite")
    sync_refused(cli, "column 'title'", "changed type", "profilesync sync users --resync")
    cli.ok("sync", "users", "--resync")
    assert profiles_in(cli)["10003"] == {"Title": {"first": "t2"}}


def test_the_change_data_feed_turned_off_later(lake: Warehouse, cli: Cli) -> None:
    lake.dt("prod.users").alter.set_table_properties({"delta.enableChangeDataFeed": "false"})
    retitle(lake, 10001, "x")
    sync_refused(cli, "enableChangeDataFeed is off", "--resync")


# -- a table restored from a copy ---------------------------------------------------------


def _restore(lake: Warehouse, copy: Path) -> None:
    shutil.rmtree(lake.path("prod.users"))
    shutil.copytree(copy, lake.path("prod.users"))


def test_a_table_restored_from_a_copy_then_changed_needs_a_resync(
    lake: Warehouse, cli: Cli, tmp_path: Path
) -> None:
    shutil.copytree(lake.path("prod.users"), tmp_path / "copy")  # at version 0
    for uid in (10001, 10002, 10003):
        retitle(lake, uid, "synced-then-lost")
    cli.ok("sync", "users")  # checkpoint: version 3
    _restore(lake, tmp_path / "copy")
    for n, uid in enumerate((10004, 10005, 10004, 10005)):
        retitle(lake, uid, f"after-restore-{n}")  # version 4, past the checkpoint
    sync_refused(cli, "restored from a copy", "version 3", "profilesync sync users --resync")
    cli.ok("sync", "users", "--resync")
    assert profiles_in(cli) == table_profiles(lake)
    retitle(lake, 10001, "later")  # and CDC goes on from the resynced version
    cli.ok("sync", "users")
    assert profiles_in(cli) == table_profiles(lake)


def test_a_table_restored_from_a_copy_without_new_commits_needs_a_resync(
    lake: Warehouse, cli: Cli, tmp_path: Path
) -> None:
    shutil.copytree(lake.path("prod.users"), tmp_path / "copy")
    retitle(lake, 10001, "synced-then-lost")
    cli.ok("sync", "users")
    _restore(lake, tmp_path / "copy")
    sync_refused(cli, "went back from 1 to 0", "restored from a copy", "--resync")
    cli.ok("sync", "users", "--resync")
    assert profiles_in(cli) == table_profiles(lake)


def test_a_checkpoint_from_before_commit_hashes_still_syncs(lake: Warehouse, cli: Cli) -> None:
    con = duckdb.connect(str(cli.home / "profilesync.duckdb"))
    try:
        (raw,) = con.execute("SELECT checkpoint FROM sources WHERE name = 'users'").fetchone()
        old = {k: v for k, v in json.loads(raw).items() if k != "extra"}
        con.execute("UPDATE sources SET checkpoint = ? WHERE name = 'users'", [json.dumps(old)])
    finally:
        con.close()
    retitle(lake, 10002, "new")
    assert "1 updated" in cli.ok("sync", "users").stdout
    assert profiles_in(cli) == table_profiles(lake)


# -- a table this process may not read ----------------------------------------------------


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory another user can reach (pytest's own temporary tree is private)."""
    path = Path(tempfile.mkdtemp(prefix="profilesync-states-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def as_other_user() -> list[str]:
    """Run as an unprivileged user: root reads files whatever their mode says."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: no honest way to lose read access")
    return [setpriv, "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups"]


def test_an_unreadable_table(shared_dir: Path) -> None:
    lake, home = Warehouse(shared_dir / "lake"), shared_dir / "home"
    _synced(lake, Cli(home, shared_dir))
    prefix = as_other_user()
    if prefix:
        subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(home)], check=True)
    Path(lake.path("prod.users")).chmod(0o700 if prefix else 0o000)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "HOME": str(shared_dir), "COLUMNS": "200", "NO_COLOR": "1"}
        command = [*prefix, *entry_point(), "--home", str(home), *args]
        return subprocess.run(command, capture_output=True, text=True, env=env, check=False)

    try:
        sync_refused(Cli(home, shared_dir), "permission denied", "read access", run=run)
        listing = [*prefix, sys.executable, "-c", _LIST_UNREADABLE, str(lake.root)]
        listed = subprocess.run(listing, capture_output=True, text=True, check=True)
        assert json.loads(listed.stdout) == {
            "tables": [],
            "unreadable": {
                "prod.users": "permission denied: give the user running profilesync read access"
            },
        }
        shown = run("connection", "tables", "lake")  # said on the listing, not left out
        assert shown.returncode == 0, shown.stderr
        assert "warning: cannot read prod.users: permission denied" in shown.stderr
    finally:
        Path(lake.path("prod.users")).chmod(0o755)


_LIST_UNREADABLE = """
import json, sys
from profilesync.model import Connection
from profilesync.sources.delta import DeltaSource
source = DeltaSource(Connection("lake", "delta", {"path": sys.argv[1]}))
print(json.dumps({"tables": source.list_tables(), "unreadable": source.unreadable_tables()}))
"""
