"""Editing a source from the pages (plain forms, no script) and the API, removing a property
with a confirmation, and what the profile page says of a user left without values."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest

from tests.conftest import Warehouse
from tests.server.conftest import Served


def people() -> pa.Table:
    return pa.table(
        {
            "uid": pa.array([10001, 10002, 10003], pa.int64()),
            "email": ["ann@example.com", "bob@example.com", "cy@example.com"],
            "title": ["Analyst", "Engineer", None],
            "seniority": ["junior", None, "senior"],
        }
    )


@pytest.fixture
def users(tmp_path: Path, served: Served) -> Served:
    """Source ``users`` (uid -> Seniority), synced once."""
    lake = Warehouse(tmp_path / "lake")
    lake.create("prod.users", people())
    api = served.api
    assert api.post(
        "/api/connections",
        json={"name": "lake", "kind": "delta", "config": {"path": str(lake.root)}},
    ).is_success
    body = {
        "name": "users",
        "connection": "lake",
        "table": "prod.users",
        "user_id": "uid",
        "properties": [{"column": "seniority", "name": "Seniority"}],
    }
    assert api.post("/api/sources", json=body).status_code == 201
    assert api.post("/api/sources/users/sync?wait=true").json()["status"] == "success"
    return served


def text(page: httpx.Response) -> str:
    """The page as a person reads it: no tags, entities decoded, blanks collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page.text)).split())


def hidden(page: httpx.Response) -> list[tuple[str, str]]:
    fields = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text)
    return [(k, html.unescape(v)) for k, v in fields]


def edit_form(ui: httpx.Client, **changes: Any) -> dict[str, list[str]]:
    """The edit form as the page fills it, with ``changes`` typed in."""
    page = ui.get("/sources/users/edit")
    assert page.status_code == 200
    data: dict[str, list[str]] = {
        "orig": re.findall(r'name="orig" value="([^"]*)"', page.text),
        "name": re.findall(r'name="name" value="([^"]*)"', page.text),
        "user_id": re.findall(r'<option value="([^"]*)" selected>', page.text)[:1],
        "frequency": ["12h"],
        "strategy": ["cdc"],
    }
    data.update({k: v if isinstance(v, list) else [v] for k, v in changes.items()})
    return data


def test_edit_page_reviews_then_saves_and_the_next_sync_back_fills(users: Served) -> None:
    ui, api = users.ui, users.api
    page = ui.get("/sources/users")
    assert 'href="/sources/users/edit"' in page.text
    form = ui.get("/sources/users/edit")
    # the user id choice lists the table's columns, the current one chosen
    assert '<option value="uid" selected>uid (int64)</option>' in form.text
    assert '<option value="email">email (string)</option>' in form.text

    data = edit_form(ui, add_column="title", add_name="Title")
    review = ui.post("/sources/users/edit", data={**data, "action": "review"})
    assert review.status_code == 200
    shown = text(review)
    assert (
        "Title (new): back-filled by a resync at the next sync; the resync meters an operation "
        "for each profile whose values change" in shown
    )
    assert 'id="test-result">passed' in review.text and "Analyst" in shown  # the preview
    assert [p["name"] for p in api.get("/api/sources/users").json()["properties"]] == ["Seniority"]

    saved = ui.post("/sources/users/edit", data=dict_of(hidden(review), action="save"))
    assert saved.status_code == 303 and saved.headers["location"].startswith("/sources/users?")
    doc = api.get("/api/sources/users").json()
    assert [p["name"] for p in doc["properties"]] == ["Seniority", "Title"]
    assert doc["resync_pending"]["reasons"] == ["new property Title"]
    assert "Resync pending (new property Title)" in text(ui.get("/sources/users"))
    assert "Source saved. If it needs a back-fill" in text(ui.get(saved.headers["location"]))

    run = api.post("/api/sources/users/sync?wait=true").json()  # a plain sync: the resync
    assert (run["mode"], run["updated"], run["inserted"], run["deleted"]) == ("resync", 2, 0, 0)
    assert api.get("/api/profiles/10001").json()["properties"] == {
        "Seniority": "junior",
        "Title": "Analyst",
    }
    assert "Resync pending" not in text(ui.get("/sources/users"))


def dict_of(pairs: list[tuple[str, str]], **extra: str) -> dict[str, list[str]]:
    data: dict[str, list[str]] = {}
    for key, value in pairs:
        data.setdefault(key, []).append(value)
    data.update({k: [v] for k, v in extra.items()})
    return data


def test_a_failing_edit_is_refused_with_the_checks_and_nothing_changes(users: Served) -> None:
    ui, api = users.ui, users.api
    data = edit_form(ui, add_column="email", add_name="Seniority")
    review = ui.post("/sources/users/edit", data={**data, "action": "review"})
    assert review.status_code == 400
    assert "property 'Seniority' is mapped twice" in text(review)
    other = edit_form(ui, name="user_id")  # a display name the key owns
    refused = ui.post("/sources/users/edit", data={**other, "action": "save"})
    assert refused.status_code == 400 and '"user_id" is the key' in text(refused)
    assert [p["name"] for p in api.get("/api/sources/users").json()["properties"]] == ["Seniority"]


def test_rename_remove_and_user_id_through_the_api(users: Served) -> None:
    api = users.api
    dry = api.patch("/api/sources/users?dry_run=true", json={"user_id": "email"})
    assert dry.status_code == 200
    assert dry.json()["plan"]["lines"] == [
        "user id column uid -> email: every profile of this source is re-keyed by a full "
        "resync (deletes + inserts metered: up to 3 deletes and one insert per user of the table)"
    ]
    assert api.get("/api/sources/users").json()["user_id"] == '"uid"'

    renamed = api.patch("/api/sources/users", json={"rename_properties": {"Seniority": "Level"}})
    assert renamed.status_code == 200 and renamed.json()["resync_pending"] is None
    assert renamed.json()["plan"]["lines"] == [
        "display name Seniority -> Level: renamed in place (no operations)"
    ]
    assert api.get("/api/profiles/10001").json()["properties"] == {"Level": "junior"}

    refused = api.patch("/api/sources/users", json={"add_properties": [{"column": "nickname"}]})
    assert refused.status_code == 404 and "has no column(s) nickname" in refused.json()["message"]
    frequency = api.patch("/api/sources/users", json={"frequency": "6h", "paused": True})
    assert frequency.json()["frequency"] == "6h" and frequency.json()["paused"] is True


def test_remove_asks_first_without_script_and_the_profile_page_stays_honest(
    users: Served,
) -> None:
    ui, api = users.ui, users.api
    # a button with no script posts without the confirmation: nothing is removed yet
    asked = ui.post("/properties/Seniority/remove")
    assert asked.status_code == 200
    shown = text(asked)
    assert "Remove property Seniority?" in shown
    assert "dropped from every profile now: 2 users have a value" in shown
    assert "To put it back: Edit users, add the column seniority as Seniority" in shown
    assert [p["name"] for p in api.get("/api/properties").json()] == ["Seniority"]
    assert "data-confirm" not in ui.get("/properties").text

    done = ui.post("/properties/Seniority/remove", data={"confirm": "yes"})
    assert done.status_code == 303 and api.get("/api/properties").json() == []

    # the user still has a row from users, which maps nothing now: no claim about NULLs
    lookup = text(ui.get("/profiles", params={"user_id": "10001"}))
    assert "Every mapped value is NULL" not in lookup and "is NULL in the warehouse" not in lookup
    assert "users gives no synced property now" in lookup

    # a property whose value is NULL for this user is what the NULL message is for
    api.patch("/api/sources/users", json={"add_properties": [{"column": "title", "name": "Title"}]})
    api.post("/api/sources/users/sync?wait=true")
    lookup = text(ui.get("/profiles", params={"user_id": "10003"}))
    assert "Every property users maps (Title) is NULL in the warehouse for this user." in lookup
