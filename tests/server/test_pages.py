"""The web pages without JavaScript: each step of "Add a source" validates before the next,
errors stand beside their field, and the source page's buttons do what they say."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx

from profilesync.mapping import from_columns
from profilesync.model import Connection, Source
from tests.conftest import Warehouse
from tests.server.conftest import Served, people


def form(page: httpx.Response, step: str) -> list[tuple[str, str]]:
    """The hidden fields of the step's form (what a browser would send back)."""
    start = page.text.index(f'<input type="hidden" name="step" value="{step}">')
    end = page.text.index("</form>", start)
    fields = re.findall(
        r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text[start:end]
    )
    return [(k, v.replace("&#34;", '"').replace("&amp;", "&")) for k, v in fields]


def post(ui: httpx.Client, fields: list[tuple[str, str]], **extra: Any) -> httpx.Response:
    data: dict[str, list[str]] = {}
    for key, value in fields:
        if key not in extra:
            data.setdefault(key, []).append(value)
    for key, values in extra.items():
        data[key] = values if isinstance(values, list) else [values]
    return ui.post("/sources/new", data=data)


def error_of(page: httpx.Response, field: str) -> str:
    match = re.search(rf'<p class="error" id="err-{field}">(.*?)</p>', page.text, re.S)
    assert match, f"no error beside {field}"
    return match.group(1)


def test_add_source_steps_validate_before_next(tmp_path: Path, served: Served) -> None:
    lake = Warehouse(tmp_path / "lake")
    lake.create("prod.users", people([10001, 10002], ["Analyst", "Engineer"]))
    ui = served.ui
    empty = ui.get("/")
    assert "No sources yet — add one." in empty.text
    assert 'href="/sources/new?kind=delta"' in empty.text  # the "Add more" tiles

    # Set up connection: required fields, then the kind's own validation, beside the field
    page = ui.post(
        "/sources/new",
        data={"step": "connection", "action": "create", "kind": "delta", "conn_name": ""},
    )
    assert page.status_code == 422
    assert "Give the connection a name" in error_of(page, "conn_name")
    assert "is required" in error_of(page, "cfg_path")
    page = ui.post(
        "/sources/new",
        data={
            "step": "connection",
            "action": "create",
            "kind": "delta",
            "conn_name": "lake",
            "cfg_path": "/no/such/dir",
        },
    )
    assert "is not a directory" in error_of(page, "cfg_path")
    assert 'value="lake"' in page.text  # what was typed stays
    page = ui.post(
        "/sources/new",
        data={
            "step": "connection",
            "action": "create",
            "kind": "delta",
            "conn_name": "lake",
            "cfg_path": str(lake.root),
        },
    )
    assert page.status_code == 200 and 'value="prod.users"' in page.text

    # Select table
    fields = form(page, "table")
    page = post(ui, fields, mode="table")
    assert "Choose a table" in error_of(page, "table")
    page = post(ui, fields, mode="query", query="SELECT 1")
    assert error_of(page, "query")
    page = post(ui, fields, mode="table", table="prod.users")
    assert 'name="user_id"' in page.text and '<option value="uid" selected>' in page.text

    # Column mapping: + Add field works without scripts; duplicate names are refused
    fields = form(page, "mapping")
    page = post(ui, fields, user_id="uid", action="add_field")
    assert page.text.count('name="prop_column"') == 2  # the new row and the template's
    page = post(ui, fields, user_id="", action="next")
    assert "Choose the column that holds the user id" in error_of(page, "user_id")
    page = post(
        ui, fields, user_id="uid", prop_column=["title", "title"], prop_name=["Title", "Title"]
    )
    assert "used twice" in error_of(page, "prop_name_1")
    page = post(ui, fields, user_id="uid", prop_column=["title"], prop_name=[""])
    assert '<option value="cdc" selected>' in page.text  # CDC pre-selected for Delta

    # Select data -> Test mapping -> Name and frequency
    fields = form(page, "data")
    assert ("prop_name", "") in fields
    page = post(ui, fields, strategy="sideways")
    assert error_of(page, "strategy")
    page = post(ui, fields, strategy="cdc")
    assert 'id="test-result">passed' in page.text and "10002" in page.text
    fields = form(page, "test")
    page = post(ui, fields, action="next")
    assert '<option value="12h" selected>' in page.text
    fields = form(page, "save")
    page = post(ui, fields, name="", frequency="12h")
    assert "is not valid" in error_of(page, "name")
    saved = post(ui, fields, name="users", frequency="12h")
    assert saved.status_code == 303 and saved.headers["location"] == "/sources/users?notice=created"
    again = post(ui, fields, name="users", frequency="12h")
    assert "exists already" in error_of(again, "name")
    # the display name defaulted to the column
    assert served.api.get("/api/sources/users").json()["properties"][0]["name"] == "title"


def test_source_page_actions(tmp_path: Path, served: Served) -> None:
    lake = Warehouse(tmp_path / "lake")
    lake.create("prod.users", people([10001, 10002, 42], ["Analyst", "Engineer", "Bot"]))
    api, ui = served.api, served.ui
    api.post(
        "/api/connections",
        json={"name": "lake", "kind": "delta", "config": {"path": str(lake.root)}},
    )
    body = {
        "name": "users",
        "connection": "lake",
        "table": "prod.users",
        "user_id": "uid",
        "properties": [{"column": "title", "name": "Title"}],
    }
    api.post("/api/sources", json=body)

    queued = ui.post("/sources/users/sync")
    assert (
        queued.status_code == 303 and queued.headers["location"] == "/sources/users?notice=queued"
    )
    runs = served.wait_for_run("users", 1)
    page = ui.get("/sources/users")
    assert "Run history" in page.text and "initial" in page.text
    assert "Rejected rows of run" in page.text and "shorter than 5 characters" in page.text
    assert ui.get(f"/sources/users/runs/{runs[0]['id']}").text.count("shorter than 5") == 1

    assert ui.post("/sources/users/pause").headers["location"].endswith("notice=paused")
    assert "Paused" in ui.get("/sources/users").text
    assert ui.post("/sources/users/resume").status_code == 303
    assert ui.post("/sources/users/frequency", data={"frequency": "1h"}).status_code == 303
    assert '<option value="1h" selected>' in ui.get("/sources/users").text
    bad = ui.post("/sources/users/frequency", data={"frequency": "whenever"})
    assert bad.status_code == 200 and "is not understood" in bad.text

    assert "Title" in ui.get("/profiles", params={"user_id": "10001"}).text
    missing = ui.get("/profiles", params={"user_id": "99999"})
    assert 'id="err-user_id"' in missing.text and "no profile" in missing.text
    usage = ui.get("/usage")
    assert "<svg" in usage.text and "2 of 300,000,000 operations" in usage.text

    assert (
        ui.post("/properties/Title/remove", data={"confirm": "yes"}).headers["location"]
        == "/properties?notice=property_removed"
    )
    assert "No properties yet" in ui.get("/properties").text

    confirm = ui.get("/sources/users/delete")
    assert (
        "2 users have a row from this source" in confirm.text
        and "run history stays" in confirm.text.lower()
    )
    assert ui.post("/sources/users/delete").headers["location"] == "/?notice=deleted"
    assert "No sources yet" in ui.get("/").text
    assert ui.get("/sources/users").status_code == 404


def test_postgres_delete_page_explains_the_slot(served: Served) -> None:
    # a postgres connection needs no server to be saved; its source is added without checks
    store = served.app.state.store
    with served.app.state.store_lock:
        store.add_connection(Connection("pg", "postgres", {"dsn": "host=localhost dbname=app"}))
        store.add_source(
            Source("pgusers", "pg", from_columns("public.users", "id", [("plan", "Plan")]))
        )
    page = served.ui.get("/sources/pgusers/delete")
    assert "replication slot is dropped" in page.text and "WAL" in page.text
