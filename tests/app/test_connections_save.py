"""A connection is saved only once its warehouse answers with tables, through the API and
the CLI alike; "save anyway" saves one that is down on purpose; an edit is tried like a new
connection, and a secret left blank keeps its stored value."""

from __future__ import annotations

import importlib.util
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from profilesync.store.duckdb import DuckDBStore
from tests.conftest import Cli, Warehouse, users_table
from tests.robustness.conftest import assert_api_refused, assert_cli_refused
from tests.server.conftest import Served, serving


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with serving(tmp_path / "home") as s:
        yield s


@pytest.fixture
def lake(tmp_path: Path) -> Warehouse:
    lake = Warehouse(tmp_path / "lake")
    lake.create("prod.users", users_table(2))
    return lake


@pytest.fixture
def empty(tmp_path: Path) -> Path:
    path = tmp_path / "empty"
    path.mkdir()
    return path


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pg_dsn(port: int) -> str:
    return f"host=127.0.0.1 port={port} dbname=app user=app connect_timeout=3"


SNOWFLAKE = {"account": "myorg-acct", "user": "loader", "password": "pw", "database": "PROD"}
needs_no_snowflake = pytest.mark.skipif(
    importlib.util.find_spec("snowflake") is not None,
    reason="the Snowflake driver is installed here: its absence cannot be shown",
)


def names(served: Served) -> list[str]:
    return [c["name"] for c in served.api.get("/api/connections").json()]


# -- the API ------------------------------------------------------------------------------


def test_api_refuses_an_empty_directory_and_saves_a_real_one(
    served: Served, empty: Path, lake: Warehouse
) -> None:
    body = {"name": "lake", "kind": "delta", "config": {"path": str(empty)}}
    refused = served.api.post("/api/connections", json=body)
    message = assert_api_refused(refused, "holds no Delta table", "_delta_log", "not saved")
    assert '"save_anyway": true' in message and str(empty) in message
    assert names(served) == []
    saved = served.api.post(
        "/api/connections",
        json={"name": "lake", "kind": "delta", "config": {"path": str(lake.root)}},
    )
    assert saved.status_code == 201 and saved.json()["tables"] == ["prod.users"]


@needs_no_snowflake
def test_api_refuses_a_kind_whose_driver_is_missing_with_the_pip_line(served: Served) -> None:
    body = {"name": "sf", "kind": "snowflake", "config": SNOWFLAKE}
    refused = served.api.post("/api/connections", json=body)
    assert_api_refused(refused, 'pip install "profilesync[snowflake]"', "not saved", status=422)
    assert refused.json()["code"] == "missing_dependency" and names(served) == []


def test_api_refuses_a_refused_postgres_port_and_saves_it_anyway(served: Served) -> None:
    port = closed_port()
    body = {"name": "pg", "kind": "postgres", "config": {"dsn": pg_dsn(port)}}
    refused = served.api.post("/api/connections", json=body)
    assert refused.status_code == 503 and refused.json()["code"] == "warehouse_unavailable"
    message = refused.json()["message"]
    assert "127.0.0.1" in message and str(port) in message and "Connection refused" in message
    assert "not saved" in message and "\n" not in message
    assert names(served) == []

    anyway = served.api.post("/api/connections", json={**body, "save_anyway": True})
    assert anyway.status_code == 201 and anyway.json()["tables"] is None
    assert names(served) == ["pg"]
    tested = served.api.post("/api/connections/pg/test")
    assert tested.status_code == 200
    assert tested.json()["ok"] is False and tested.json()["code"] == "warehouse_unavailable"
    assert str(port) in tested.json()["message"]


def test_api_edit_is_tried_before_it_is_saved(served: Served, empty: Path, lake: Warehouse) -> None:
    api = served.api
    api.post(
        "/api/connections",
        json={"name": "lake", "kind": "delta", "config": {"path": str(lake.root)}},
    )
    assert api.post("/api/connections/lake/test").json() == {
        "ok": True,
        "message": "connected: 1 table (prod.users)",
        "tables": ["prod.users"],
        "code": "ok",
    }
    refused = api.patch("/api/connections/lake", json={"config": {"path": str(empty)}})
    assert_api_refused(refused, "holds no Delta table", "not changed", status=422)
    assert api.get("/api/connections/lake").json()["config"] == {"path": str(lake.root)}

    anyway = api.patch(
        "/api/connections/lake", json={"config": {"path": str(empty)}, "save_anyway": True}
    )
    assert anyway.status_code == 200 and anyway.json()["config"] == {"path": str(empty)}
    assert api.post("/api/connections/lake/test").json()["ok"] is False
    fixed = api.patch("/api/connections/lake", json={"config": {"path": str(lake.root)}})
    assert fixed.status_code == 200 and fixed.json()["tables"] == ["prod.users"]


def test_api_edit_keeps_a_secret_left_blank(served: Served) -> None:
    api = served.api
    config = {"dsn": pg_dsn(closed_port()), "password": "first-Secret-1"}
    made = api.post("/api/connections", json={"name": "pg", "kind": "postgres", "config": config})
    assert made.status_code == 503  # nothing listens: refused, as any unreachable server
    api.post(
        "/api/connections",
        json={"name": "pg", "kind": "postgres", "config": config, "save_anyway": True},
    )
    other = pg_dsn(closed_port())
    changed = api.patch(
        "/api/connections/pg",
        json={"config": {"dsn": other, "password": ""}, "save_anyway": True},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["config"] == {"dsn": other}
    assert changed.json()["secrets_set"] == ["password"]
    assert "first-Secret-1" not in changed.text
    with served.app.state.store_lock:
        stored = served.app.state.store.get_connection("pg").config
    assert stored == {"dsn": other, "password": "first-Secret-1"}
    removed = api.patch("/api/connections/pg", json={"unset": ["password"], "save_anyway": True})
    assert removed.json()["secrets_set"] == []


# -- the CLI ------------------------------------------------------------------------------


def listed(cli: Cli) -> list[str]:
    return [c["name"] for c in cli.json("connection", "list")]


def test_cli_refuses_an_empty_directory_unless_saved_anyway(cli: Cli, empty: Path) -> None:
    add = ("connection", "add", "lake", "--kind", "delta", "--path", str(empty))
    line = assert_cli_refused(cli(*add), "holds no Delta table", "not saved", "--save-anyway")
    assert str(empty) in line
    assert listed(cli) == []
    saved = cli.ok(*add, "--save-anyway")
    assert "added without trying the warehouse" in saved.stdout
    assert listed(cli) == ["lake"]
    tested = cli("connection", "test", "lake")
    assert_cli_refused(tested, "holds no Delta table")
    assert "not saved" not in tested.stderr  # the test changes nothing


def test_cli_no_check_still_saves_anyway(cli: Cli, empty: Path) -> None:
    cli.ok("connection", "add", "lake", "--kind", "delta", "--path", str(empty), "--no-check")
    assert listed(cli) == ["lake"]


@needs_no_snowflake
def test_cli_refuses_a_missing_driver_with_the_pip_line(cli: Cli) -> None:
    options = [x for k, v in SNOWFLAKE.items() for x in ("-o", f"{k}={v}")]
    refused = cli("connection", "add", "sf", "--kind", "snowflake", *options)
    assert_cli_refused(refused, 'pip install "profilesync[snowflake]"', "not saved")
    assert listed(cli) == []
    # saved anyway, every later command that needs the driver prints the same pip line
    cli.ok("connection", "add", "sf", "--kind", "snowflake", *options, "--save-anyway")
    later = cli("source", "add", "users", "--connection", "sf", "--table", "PROD.USERS",
                "--user-id", "ID")  # fmt: skip
    assert_cli_refused(later, 'pip install "profilesync[snowflake]"')


def test_cli_refuses_a_refused_postgres_port(cli: Cli) -> None:
    port = closed_port()
    refused = cli("connection", "add", "pg", "--kind", "postgres", "--dsn", pg_dsn(port))
    assert_cli_refused(refused, "127.0.0.1", str(port), "Connection refused", "--save-anyway")
    assert listed(cli) == []


def test_cli_test_and_edit(cli: Cli, lake: Warehouse, empty: Path) -> None:
    cli.ok("connection", "add", "lake", "--kind", "delta", "--path", str(lake.root))
    tested = cli.ok("connection", "test", "lake")
    assert "connected: 1 table (prod.users)" in tested.stdout
    assert cli.json("connection", "test", "lake")["ok"] is True

    refused = cli("connection", "edit", "lake", "--set", f"path={empty}")
    assert_cli_refused(refused, "holds no Delta table", "not changed", "--save-anyway")
    assert cli.json("connection", "list")[0]["config"] == {"path": str(lake.root)}
    cli.ok("connection", "edit", "lake", "--set", f"path={empty}", "--save-anyway")
    assert cli.json("connection", "list")[0]["config"] == {"path": str(empty)}
    back = cli.json("connection", "edit", "lake", "--set", f"path={lake.root}")
    assert back == {"name": "lake", "kind": "delta", "tables": ["prod.users"]}


def test_cli_edit_takes_a_secret_from_the_environment_and_keeps_others(cli: Cli) -> None:
    dsn = pg_dsn(closed_port())
    cli.ok(
        "connection", "add", "pg", "--kind", "postgres", "--dsn", dsn,
        "-o", "password=first-Secret-1", "--save-anyway",
    )  # fmt: skip
    env = {"PROFILESYNC_SECRET_PASSWORD": "second-Secret-2"}
    changed = cli(
        "connection", "edit", "pg", "--secret", "password", "--save-anyway", "--json", env=env
    )
    assert changed.returncode == 0, changed.stderr
    assert "second-Secret-2" not in changed.stdout + changed.stderr
    with DuckDBStore(cli.home) as store:
        assert store.get_connection("pg").config == {"dsn": dsn, "password": "second-Secret-2"}
    # a change that is not tried says where the server refused, with the new password in use
    refused = cli("connection", "edit", "pg", "--set", "dsn=" + dsn)
    assert_cli_refused(refused, "Connection refused")
    assert "second-Secret-2" not in refused.stderr
    shown = json.dumps(cli.json("connection", "list"))
    assert "Secret" not in shown and dsn in shown
    cli.ok("connection", "edit", "pg", "--set", "dsn=" + dsn, "--save-anyway")
    with DuckDBStore(cli.home) as store:  # an edit that does not name the secret keeps it
        assert store.get_connection("pg").config["password"] == "second-Secret-2"
