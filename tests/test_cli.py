"""The real ``profilesync`` entry point, run as a subprocess, as a user types it."""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import Cli, Warehouse, entry_point, users_table

SYNC_KEYS = {
    "source",
    "status",
    "inserted",
    "updated",
    "deleted",
    "rejected",
    "operations",
    "checkpoint",
}


def assert_one_error_line(stderr: str, *words: str) -> None:
    """A failure prints ``error: ...`` (one line, naming cause and fix) and no traceback."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in stderr
    for word in words:
        assert word in lines[0]


def on_terminal(cli: Cli, *args: str) -> str:
    """Run the CLI with a pseudo-terminal as stdout, as a person at a shell does."""
    master, child = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "PROFILESYNC_FAULT")}
    proc = subprocess.Popen(
        [*entry_point(), "--home", str(cli.home), *args],
        stdin=subprocess.DEVNULL,
        stdout=child,
        stderr=child,
        env={**env, "TERM": "xterm-256color", "COLUMNS": "120"},
    )
    os.close(child)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=60) == 0
    return b"".join(chunks).decode(errors="replace")


@pytest.fixture
def lake(warehouse: Warehouse, cli: Cli) -> Warehouse:
    """``prod.users`` (CDF on) and a ``lake`` connection to it, added through the CLI."""
    warehouse.create("prod.users", users_table(5))
    warehouse.create(
        "ml_models.prod_propensity_scoring",
        {
            "user_id": ["10001", "10002", "123"],
            "upgrade_propensity_score": [0.9, 0.1, 0.5],
            "user_model_version": ["v1", "v1", "v1"],
        },
    )
    added = cli.json("connection", "add", "lake", "--kind", "delta", "--path", str(warehouse.root))
    assert added == {
        "name": "lake",
        "kind": "delta",
        "tables": ["ml_models.prod_propensity_scoring", "prod.users"],
    }
    return warehouse


def test_connections_add_and_list(lake: Warehouse, cli: Cli, tmp_path: Path) -> None:
    listed = cli.json("connection", "list")
    assert listed == [{"name": "lake", "kind": "delta", "config": {"path": str(lake.root)}}]
    again = cli("connection", "add", "lake", "--kind", "delta", "--path", str(lake.root))
    assert again.returncode == 1
    assert_one_error_line(again.stderr, "exists already")
    missing = cli("connection", "add", "x", "--kind", "delta", "--path", str(tmp_path / "nope"))
    assert_one_error_line(missing.stderr, "is not a directory")
    unknown = cli("connection", "add", "x", "--kind", "oracle", "--path", str(tmp_path))
    assert_one_error_line(unknown.stderr, "unknown connection kind 'oracle'", "delta")


def test_sources_both_forms_sync_and_show_profiles(lake: Warehouse, cli: Cli) -> None:
    table_form = cli.json(
        "source", "add", "users", "--connection", "lake", "--table", "prod.users",
        "--user-id", "uid", "--property", "title=Job Title", "--property", "score",
        "--frequency", "6h",
    )  # fmt: skip
    assert table_form["frequency"] == "6h"
    assert [p["name"] for p in table_form["properties"]] == ["Job Title", "score"]
    query = (
        'SELECT user_id AS "user_id", upgrade_propensity_score AS "Upgrade Propensity Score", '
        'user_model_version AS "User Model Version" FROM ml_models.prod_propensity_scoring'
    )
    query_form = cli.json("source", "add", "scores", "--connection", "lake", "--query", query)
    assert (query_form["table"], query_form["query"]) == (
        "ml_models.prod_propensity_scoring",
        query,
    )
    assert [s["name"] for s in cli.json("source", "list")] == ["scores", "users"]

    tested = cli.json("source", "test", "scores")
    assert tested["ok"] is True
    assert {c["name"]: c["level"] for c in tested["checks"]}["change data feed"] == "pass"
    assert tested["rejected"] == 1
    assert tested["rejected_rows"][0]["reason"] == 'user_id "123" is shorter than 5 characters'
    assert tested["preview"][0] == {
        "user_id": "10001",
        "Upgrade Propensity Score": 0.9,
        "User Model Version": "v1",
    }

    first = cli.json("sync", "users")
    assert set(first) >= SYNC_KEYS
    assert {k: first[k] for k in SYNC_KEYS} == {
        "source": "users",
        "status": "success",
        "inserted": 5,
        "updated": 0,
        "deleted": 0,
        "rejected": 0,
        "operations": 5,
        "checkpoint": "0",
    }
    scores = cli.json("sync", "scores")
    assert (scores["inserted"], scores["rejected"]) == (2, 1)

    runs = cli.json("runs", "scores")
    assert runs[0]["rejected_rows"] == [
        {
            "reason": 'user_id "123" is shorter than 5 characters',
            "row": {"user_id": "123", "Upgrade Propensity Score": 0.5, "User Model Version": "v1"},
        }
    ]
    assert "shorter than 5 characters" in cli.ok("runs", "scores").stdout

    assert cli.json("profile", "get", "10001") == {
        "user_id": "10001",
        "properties": {
            "Job Title": "title-10001",
            "score": 100.01,
            "Upgrade Propensity Score": 0.9,
            "User Model Version": "v1",
        },
    }
    exported = [json.loads(line) for line in cli.ok("profile", "export").stdout.splitlines()]
    assert [p["user_id"] for p in exported] == ["10001", "10002", "10003", "10004", "10005"]
    assert all(set(p) == {"user_id", "properties"} for p in exported)
    assert exported[2]["properties"] == {"Job Title": "title-10003", "score": 100.03}

    usage = cli.json("usage")
    assert (usage["plan"], usage["limit"], usage["used"]) == ("growth", 300_000_000, 7)
    assert usage["sources"] == [
        {"source": "scores", "operations": 2},
        {"source": "users", "operations": 5},
    ]

    lake.update("prod.users", "uid = 10002", {"title": "NULL"})
    text = cli.ok("sync", "users").stdout  # not a terminal: a summary line, no progress bar
    assert "1 updated" in text and "checkpoint 1" in text
    assert "Job Title" not in cli.json("profile", "get", "10002")["properties"]

    deleted = cli.ok("source", "delete", "scores")
    assert "deleted" in deleted.stdout
    assert cli.json("profile", "get", "10001")["properties"] == {
        "Job Title": "title-10001",
        "score": 100.01,
    }
    assert [s["name"] for s in cli.json("source", "list")] == ["users"]


def test_progress_is_drawn_on_a_terminal_but_not_with_json(lake: Warehouse, cli: Cli) -> None:
    cli.ok("source", "add", "users", "--connection", "lake", "--table", "prod.users",
           "--user-id", "uid", "--property", "title")  # fmt: skip
    shown = on_terminal(cli, "sync", "users")
    assert "\x1b[?25l" in shown  # the live progress display hides the cursor while it draws
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown)
    assert "synced users (initial): 5 inserted" in text
    lake.update("prod.users", "uid = 10001", {"title": "'x'"})
    as_json = on_terminal(cli, "sync", "users", "--json")
    assert "\x1b[" not in as_json
    assert json.loads(as_json)["updated"] == 1


def test_refusals_name_the_cause_and_the_fix(lake: Warehouse, cli: Cli) -> None:
    lake.create("prod.plain", users_table(2), cdf=False)
    add = [
        "source",
        "add",
        "plain",
        "--connection",
        "lake",
        "--table",
        "prod.plain",
        "--user-id",
        "uid",
    ]
    refused = cli(*add)
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: Test mapping failed, the source was not saved")
    assert "/prod/plain` SET TBLPROPERTIES (delta.enableChangeDataFeed = true)" in refused.stderr
    assert "Traceback" not in refused.stderr
    cli.ok(*add, "--no-check")
    tested = cli("source", "test", "plain", "--json")
    assert tested.returncode == 1
    assert not json.loads(tested.stdout)["ok"]

    join = cli(
        "source", "add", "j", "--connection", "lake",
        "--query", 'SELECT a.uid AS "user_id" FROM prod.users a JOIN prod.plain b ON a.uid = b.uid',
    )  # fmt: skip
    assert_one_error_line(join.stderr, "a JOIN", "single-table SELECT")
    clash = cli(
        "source", "add", "plain2", "--connection", "lake", "--table", "prod.plain",
        "--user-id", "uid", "--property", "title", "--property", "active=title", "--no-check",
    )  # fmt: skip
    assert_one_error_line(clash.stderr, "property 'title' is mapped twice")
    assert_one_error_line(cli("sync", "nope").stderr, "no source named 'nope'", "source list")
    assert_one_error_line(cli("profile", "get", "99999").stderr, "no profile for user_id")
    bad_freq = cli(*add[:2], "x", *add[3:], "--frequency", "soon", "--no-check")
    assert_one_error_line(bad_freq.stderr, "frequency 'soon'", "12h")

    debug = cli("--debug", "sync", "nope")
    assert debug.returncode != 0
    assert "Traceback" in debug.stderr and "NotFoundError" in debug.stderr


def test_replace_then_resync_and_quota_through_the_cli(lake: Warehouse, cli: Cli) -> None:
    cli.ok("source", "add", "users", "--connection", "lake", "--table", "prod.users",
           "--user-id", "uid", "--property", "title")  # fmt: skip
    cli.ok("sync", "users")
    shutil.rmtree(lake.path("prod.users"))
    lake.create("prod.users", users_table(6))
    replaced = cli("sync", "users", "--json")
    assert replaced.returncode == 1
    assert replaced.stdout == ""
    assert_one_error_line(
        replaced.stderr,
        "dropped and re-created",
        "dbt full refresh",
        "profilesync sync users --resync",
    )
    assert cli.json("runs", "users")[0]["error_code"] == "table_replaced"

    cli.ok("config", "set", "operations_limit", "5")
    over = cli("sync", "users", "--resync")
    assert_one_error_line(over.stderr, "1 operations", "5 of the growth plan's 5", "would reach 6")
    assert cli.json("usage")["used"] == 5
    cli.ok("config", "set", "operations_limit", "default")
    resynced = cli.json("sync", "users", "--resync")
    assert (resynced["mode"], resynced["inserted"], resynced["operations"]) == ("resync", 1, 1)
    cli.ok("config", "set", "plan", "enterprise")
    assert cli.json("config", "get")["operations_limit"] == 1_000_000_000
    assert_one_error_line(cli("config", "set", "plan", "free").stderr, "choose one of growth")


def test_demo_runs_in_seconds(cli: Cli, tmp_path: Path) -> None:
    start = time.monotonic()
    demo = cli.ok("demo", "--dir", str(tmp_path / "demo"))
    assert time.monotonic() - start < 30
    assert "what changed in the profile store" in demo.stdout
    assert "shorter than 5 characters" in demo.stdout
    home = Cli(tmp_path / "demo" / "home", tmp_path)
    promoted = home.json("profile", "get", "100003")["properties"]
    assert (promoted["Title"], promoted["User Model Version"]) == ("Head of Data", "v2")
    assert "DMA" not in home.json("profile", "get", "100007")["properties"]
    assert "Title" not in home.json("profile", "get", "100005")["properties"]  # deleted user
    runs = home.json("runs", "users")
    assert (runs[0]["mode"], runs[0]["rejected"]) == ("incremental", 1)


def test_connection_kinds_lists_each_kinds_settings_from_its_spec(cli: Cli) -> None:
    """What `connection add` takes per kind is the kind's config spec, secrets marked."""
    from profilesync.warehouses import KINDS, config_spec

    kinds = {k["kind"]: k for k in cli.json("connection", "kinds")}
    assert set(kinds) == set(KINDS)
    for kind, doc in kinds.items():
        spec = config_spec(kind)
        assert [f["name"] for f in doc["fields"]] == list(spec.names)
        assert {f["name"] for f in doc["fields"] if f["secret"]} == set(spec.secret_names)
    shown = cli.ok("connection", "kinds").stdout
    assert "-o password=VALUE (secret)" in shown
    assert "--dsn (required)" in shown
