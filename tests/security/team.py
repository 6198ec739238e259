"""A served home with people in it: members of each role, each with a UI session and an
API token, and a small world to change (a Delta connection, a synced source, a project)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from profilesync.app import audit as app_audit
from profilesync.app import users as app_users
from tests.conftest import Warehouse
from tests.server.conftest import Served, people

MEMBER_PASSWORD = "member-password-1"


@dataclass
class Member:
    name: str
    role: str
    token: str
    ui: httpx.Client
    api: httpx.Client


def add_member(served: Served, name: str, role: str) -> Member:
    """A user added as the host's operator would (`profilesync user add`), logged in."""
    with served.app.state.store_lock:
        store = served.app.state.store
        app_users.add_user(store, name, role, MEMBER_PASSWORD)
        _, token = app_users.create_token(store, name, "tests")
    ui = httpx.Client(base_url=served.url, follow_redirects=False, timeout=60)
    resp = ui.post("/login", data={"username": name, "password": MEMBER_PASSWORD, "next": "/"})
    assert resp.status_code == 303, resp.text
    api = httpx.Client(
        base_url=served.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
    )
    return Member(name, role, token, ui, api)


Team = Callable[[str, str], Member]


@pytest.fixture
def team(served: Served) -> Iterator[Team]:
    """``team(name, role)``: a logged-in member; their clients are closed afterwards."""
    made: list[Member] = []

    def add(name: str, role: str) -> Member:
        made.append(add_member(served, name, role))
        return made[-1]

    yield add
    for member in made:
        member.ui.close()
        member.api.close()


def build_world(tmp_path: Path, served: Served) -> None:
    lake = Warehouse(tmp_path / "lake")
    lake.create("prod.users", people([10001, 10002], ["Analyst", "Engineer"]))
    synced_delta_source(served, lake, "people", {"title": "Title"})
    assert served.api.post("/api/projects", json={"name": "web"}).status_code == 201


def synced_delta_source(
    served: Served, lake: Warehouse, source: str, properties: dict[str, str]
) -> None:
    """Through the API: a connection ``lake`` to ``lake`` and a source on its ``prod.users``
    table keyed by ``uid`` with ``properties`` (column -> name), synced once."""
    api = served.api
    made = api.post(
        "/api/connections",
        json={"name": "lake", "kind": "delta", "config": {"path": str(lake.root)}},
    )
    assert made.status_code == 201, made.text
    spec = {
        "name": source,
        "connection": "lake",
        "table": "prod.users",
        "user_id": "uid",
        "properties": [{"column": c, "name": n} for c, n in properties.items()],
    }
    assert api.post("/api/sources", json=spec).status_code == 201
    ran = api.post(f"/api/sources/{source}/sync", params={"wait": "true"})
    assert ran.status_code == 200 and ran.json()["status"] == "success", ran.text


def snapshot(served: Served) -> dict[str, Any]:
    """Everything a change could touch, as the admin sees it."""
    api = served.api
    with served.app.state.store_lock:
        store = served.app.state.store
        # a token's "last used" moves with every call: not a change anyone made
        tokens = [{**t.to_json(), "last_used_at": None} for t in app_users.list_tokens(store)]
        audit = [e.to_json() for e in app_audit.entries(store, 1000)]
        settings = store.quota()
    return {
        "sources": [
            {k: v for k, v in s.items() if k not in ("next_run", "next_run_in")}
            for s in api.get("/api/sources").json()
        ],
        "connections": api.get("/api/connections").json(),
        "properties": api.get("/api/properties").json(),
        "projects": api.get("/api/projects").json(),
        "profile": api.get("/api/profiles/10001").json(),
        "members": api.get("/api/members").json(),
        "tokens": tokens,
        "audit": audit,
        "settings": settings,
    }
