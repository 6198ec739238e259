"""PATCH /api/sources/{name} applies its whole body: an edit of the mapping together with
``paused`` saves both."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Warehouse, users_table
from tests.server.conftest import Served


@pytest.fixture
def users(tmp_path: Path, served: Served) -> Served:
    """Source ``users`` (uid -> Title), synced once."""
    lake = Warehouse(tmp_path / "lake")
    lake.create("prod.users", users_table(3))
    api = served.api
    connection = {"name": "lake", "kind": "delta", "config": {"path": str(lake.root)}}
    assert api.post("/api/connections", json=connection).is_success
    body = {
        "name": "users",
        "connection": "lake",
        "table": "prod.users",
        "user_id": "uid",
        "properties": [{"column": "title", "name": "Title"}],
    }
    assert api.post("/api/sources", json=body).status_code == 201
    assert api.post("/api/sources/users/sync?wait=true").json()["status"] == "success"
    return served


def test_an_edit_with_paused_saves_both(users: Served) -> None:
    api = users.api
    body = {"rename_properties": {"Title": "Job title"}, "paused": True, "frequency": "6h"}
    answer = api.patch("/api/sources/users", json=body)
    assert answer.status_code == 200, answer.text
    doc = answer.json()
    assert [p["name"] for p in doc["properties"]] == ["Job title"]
    assert (doc["paused"], doc["frequency"]) == (True, "6h")
    assert doc["plan"]["lines"][0].startswith("display name Title -> Job title")
    shown = api.get("/api/sources/users").json()
    assert (shown["paused"], shown["frequency"]) == (True, "6h")

    resumed = api.patch("/api/sources/users", json={"add_properties": [{"column": "score",
                        "name": "Score"}], "paused": False})  # fmt: skip
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["paused"] is False
    assert [p["name"] for p in resumed.json()["properties"]] == ["Job title", "Score"]
