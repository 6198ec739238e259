"""``profilesync query funnel|retention|cohort`` as a user types them, on a home holding
the funnel suite's profiles and events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from profilesync.mapping import from_columns
from profilesync.model import Connection, Source
from profilesync.store import open_store
from tests.conftest import Cli
from tests.query.conftest import load
from tests.query.test_funnel import small_world
from tests.store.conftest import PROPS
from tests.test_cli import assert_one_error_line


@pytest.fixture
def home(cli: Cli) -> Path:
    with open_store(cli.home, backend="duckdb") as opened:
        opened.add_connection(Connection("lake", "delta", {"path": "warehouse"}))
        opened.add_source(Source("users", "lake", from_columns("prod.users", "uid", PROPS)))
        load(opened, small_world())
    return cli.home


RANGE = ("--from", "2024-05-01", "--to", "2024-05-07")


def test_funnel_prints_steps_and_json(cli: Cli, home: Path) -> None:
    args = ("query", "funnel", "-e", "View", "-e", "Cart", "-e", "Buy", "--window", "1h", *RANGE)
    doc = cli.json(*args)
    assert [s["users"] for s in doc["steps"]] == [7, 6, 2]
    assert set(doc["steps"][0]) == {
        "event_type", "users", "conversion", "step_conversion", "drop_off",
        "median_seconds_to_convert",
    }  # fmt: skip
    grouped = cli.json(*args, "--group-by", "profile:Title", "--order", "any")
    assert {g["label"]: [s["users"] for s in g["steps"]] for g in grouped["groups"]} == {
        "Manager": [3, 2, 1], "Engineer": [2, 2, 1], "(none)": [2, 2, 1],  # u6 not deleted here
    }  # fmt: skip
    text = cli.ok(*args).stdout
    assert "3. Buy" in text and "28.6%" in text and "0:10:00" in text


def test_retention_takes_start_and_return(cli: Cli, home: Path) -> None:
    doc = cli.json("query", "retention", "--start", "View", "--return", "Cart", "--buckets", "2",
                   "--mode", "on-or-after", *RANGE)  # fmt: skip
    assert doc["mode"] == "on_or_after"
    assert doc["cohorts"][0] == {
        "start": "2024-05-01", "users": 7, "returned": [6, 0, 0], "rates": [6 / 7, 0, 0],
    }  # fmt: skip
    text = cli.ok(
        "query", "retention", "--start-event", "View", "--return-event", "Cart", *RANGE
    ).stdout
    assert "2024-05-01" in text and "86%" in text


def test_cohort_add_show_export_and_filter(cli: Cli, home: Path) -> None:
    added = cli.ok("query", "cohort", "add", "managers", "--where", "Title=Manager")
    assert "3 users now" in added.stdout
    assert cli.json("query", "cohort", "show", "managers")["sample"] == ["u3", "u4", "u6"]
    assert cli.ok("query", "cohort", "export", "managers").stdout == "user_id\nu3\nu4\nu6\n"
    lines = cli.ok("query", "cohort", "export", "managers", "--format", "jsonl").stdout
    assert [json.loads(x)["user_id"] for x in lines.splitlines()] == ["u3", "u4", "u6"]
    doc = cli.json("query", "funnel", "-e", "View", "-e", "Buy", "--window", "2h",
                   "--where", "cohort:managers", *RANGE)  # fmt: skip
    assert [s["users"] for s in doc["steps"]] == [3, 2]  # u6 never bought
    seg = cli.json("query", "segmentation", "-e", "View", "--where", "!cohort:managers", *RANGE)
    assert seg["series"][0]["total"] == 4  # u1, u2, u5 and the device
    assert "managers" in cli.ok("query", "cohort", "list").stdout
    failed = cli("query", "cohort", "add", "managers", "--did", "Buy>=2 in 30d")
    assert failed.returncode == 1
    assert_one_error_line(failed.stderr, "exists")
    cli.ok("query", "cohort", "delete", "managers")
    missing = cli("query", "funnel", "-e", "View", "-e", "Buy", "--where", "cohort:managers")
    assert_one_error_line(missing.stderr, "no cohort named 'managers'")


def test_bad_input_is_one_error_line(cli: Cli, home: Path) -> None:
    bad = cli("query", "funnel", "-e", "View", "-e", "Buy", "--window", "7 days")
    assert_one_error_line(bad.stderr, "window", "7 days")
    one = cli("query", "funnel", "-e", "View")
    assert_one_error_line(one.stderr, "steps")
    behaviour = cli("query", "cohort", "add", "x", "--did", ">=2")
    assert_one_error_line(behaviour.stderr, "not understood")
