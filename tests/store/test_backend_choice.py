"""Choosing the store from every surface: ``--store`` / ``PROFILESYNC_STORE`` on the command
line, recorded in the home at first use and refused when another one is named later; the
server and the demo open the backend the home was made with. Run through the real entry
point on a real Delta table, and compared with the same commands on DuckDB."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli, Warehouse, users_table
from tests.events.conftest import ms
from tests.server.conftest import serving
from tests.test_cli import assert_one_error_line

pytest.importorskip("chdb", reason="needs the clickhouse extra: pip install .[clickhouse]")

CHDB = {"PROFILESYNC_STORE": "chdb"}


def events_file(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    docs = [
        {"event_type": "Purchase", "user_id": "10001", "time": ms(1), "event_properties": {"amount": 5}},
        {"event_type": "Purchase", "user_id": "10002", "time": ms(1), "event_properties": {"amount": 7.5}},
        {"event_type": "Purchase", "user_id": "10002", "time": ms(2), "event_properties": {"amount": None}},
        {"event_type": "View", "user_id": "10003", "time": ms(2), "insert_id": "v-1"},
        {"event_type": "View", "user_id": "10003", "time": ms(2), "insert_id": "v-1"},
        {"event_type": "View", "device_id": "dev-00001", "time": ms(3)},
    ]  # fmt: skip
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return path


def series(doc: dict[str, Any]) -> dict[str, list[Any]]:
    return {s["label"]: s["values"] for s in doc["series"]}


def test_a_chdb_home_made_on_the_command_line_syncs_and_answers(
    tmp_path: Path, warehouse: Warehouse, cli: Cli
) -> None:
    warehouse.create("prod.users", users_table(5))
    add = ("connection", "add", "lake", "--kind", "delta", "--path", str(warehouse.root))
    cli.ok("--store", "chdb", *add)  # the only command naming the store
    cli.ok("source", "add", "users", "--connection", "lake", "--table", "prod.users",
           "--user-id", "uid", "--property", "title=Job Title", "--property", "score")  # fmt: skip
    first = cli.json("sync", "users")
    assert (first["status"], first["inserted"], first["operations"]) == ("success", 5, 5)
    warehouse.update("prod.users", "uid = 10002", {"title": "'boss'"})
    warehouse.delete("prod.users", "uid = 10005")
    second = cli.json("sync", "users")
    assert (second["inserted"], second["updated"], second["deleted"]) == (0, 1, 1)
    assert cli.json("profile", "get", "10002") == {
        "user_id": "10002",
        "properties": {"Job Title": "boss", "score": 100.02},
    }
    exported = [
        json.loads(line)["user_id"] for line in cli.ok("profile", "export").stdout.splitlines()
    ]
    assert exported == ["10001", "10002", "10003", "10004"]
    cli.ok("events", "projects", "add", "web")
    imported = cli.json("events", "import", str(events_file(tmp_path)), "--project", "web")
    assert (imported["imported"], imported["duplicates"]) == (5, 1)
    span = ("query", "segmentation", "--from", "2024-05-01", "--to", "2024-05-03")
    grouped = cli.json(*span, "-e", "Purchase", "-g", "profile:Job Title")
    assert series(grouped) == {"boss": [1, 1, 0], "title-10001": [1, 0, 0]}
    summed = cli.json(*span, "-e", "Purchase", "--metric", "sum", "--property", "amount")
    assert series(summed) == {"Purchase": [12.5, 0.0, 0.0]}
    weekly = cli.json(*span, "-e", "Purchase", "-w", "event:amount is set", "--interval", "week")
    assert (weekly["buckets"], series(weekly)) == (["2024-04-29T00:00:00Z"], {"Purchase": [2]})
    assert cli.json("usage")["used"] == 5 + 2
    assert stat.S_IMODE((cli.home / "clickhouse").stat().st_mode) == 0o700


def test_the_store_comes_from_the_environment_and_a_home_keeps_it(cli: Cli) -> None:
    assert cli("events", "projects", "add", "web", env=CHDB).returncode == 0
    assert (cli.home / "clickhouse").is_dir()
    assert cli.json("usage")["used"] == 0  # no --store: the recorded one
    assert cli.json("--store", "chdb", "events", "projects", "list")[0]["name"] == "web"
    for refused in (
        cli("--store", "duckdb", "usage"),
        cli("usage", env={"PROFILESYNC_STORE": "duckdb"}),
        cli("--store", "duckdb", "sync", "users"),  # commands that open the home by its path
    ):
        assert refused.returncode == 1
        assert_one_error_line(refused.stderr, "created with --store chdb, not duckdb")
    bad = cli("--store", "mysql", "usage")
    assert bad.returncode == 1
    assert_one_error_line(bad.stderr, "unknown store backend 'mysql'", "chdb", "clickhouse://")


def test_a_duckdb_home_refuses_chdb(cli: Cli, warehouse: Warehouse) -> None:
    warehouse.create("prod.users", users_table(3))
    cli.ok("connection", "add", "lake", "--kind", "delta", "--path", str(warehouse.root))
    refused = cli("connection", "list", env=CHDB)
    assert refused.returncode == 1
    assert_one_error_line(refused.stderr, "created with --store duckdb, not chdb")
    assert not (cli.home / "clickhouse").exists()


def test_serve_opens_the_backend_the_home_was_made_with(
    tmp_path: Path, warehouse: Warehouse, cli: Cli
) -> None:
    warehouse.create("prod.users", users_table(3))
    cli.ok("--store", "chdb", "connection", "add", "lake", "--kind", "delta",
           "--path", str(warehouse.root))  # fmt: skip
    cli.ok("source", "add", "users", "--connection", "lake", "--table", "prod.users",
           "--user-id", "uid", "--property", "title")  # fmt: skip
    with serving(cli.home) as served:
        assert served.app.state.store.capabilities.dialect == "clickhouse"
        run = served.api.post("/api/sources/users/sync", params={"wait": "true"}).json()
        assert (run["status"], run["inserted"]) == ("success", 3)
        key = served.api.post("/api/projects", json={"name": "web"}).json()["api_key"]
        events = [{"event_type": "Login", "user_id": "10001", "time": ms(1)}] * 2
        sent = served.ui.post("/2/httpapi", json={"api_key": key, "events": events})
        assert sent.status_code == 200, sent.text
        query = {"events": ["Login"], "start": "2024-05-01", "end": "2024-05-01",
                 "group_by": {"kind": "profile", "name": "title"}}  # fmt: skip
        answer = served.api.post("/api/query/segmentation", json=query).json()
        assert [(s["label"], s["values"]) for s in answer["series"]] == [("title-10001", [2])]
        assert served.api.get("/api/users/10001").json()["profile"]["properties"] == {
            "title": "title-10001"
        }
    assert cli.json("runs", "users")[0]["inserted"] == 3


def test_the_demo_runs_on_chdb_as_on_duckdb(tmp_path: Path, cli: Cli) -> None:
    shown = []
    # Directory names of one length, so that Rich wraps both outputs at the same place.
    for store, name in (("duckdb", "on-duckdb"), ("chdb", "on-chdb__")):
        demo = cli.ok("demo", "--dir", str(tmp_path / name), "--store", store).stdout
        shown.append(
            [
                line
                for line in demo.replace(str(tmp_path / name), "DIR").splitlines()
                if "API key" not in line and "store:" not in line
            ]
        )
    assert shown[0] == shown[1]
    assert "Purchase Completed" in "\n".join(shown[1])
    assert (tmp_path / "on-chdb__" / "home" / "clickhouse").is_dir()
    profile = json.loads(
        Cli(tmp_path / "on-chdb__" / "home", tmp_path)
        .ok("profile", "get", "100003", "--json")
        .stdout
    )
    assert profile["properties"]["User Model Version"] == "v2"
