"""Roles hold on every route, found from the app's route table (a route added later is
checked the day it is added): a viewer reads everything and changes nothing, only an
admin manages users, and pages offer a viewer no change buttons."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from profilesync.server.readonly import NOT_CHANGES
from tests.security.team import Member, Team, build_world, snapshot
from tests.security.test_routes import UNSAFE, Endpoint, endpoints
from tests.server.conftest import Served, serving

#: a real thing for each path parameter, by the route's first word
REAL = {"sources": "people", "connections": "lake", "projects": "web", "properties": "Title"}
_POST_FORM = re.compile(r"<form\b[^>]*method=\"post\"[^>]*>", re.I)


def fill(endpoint: Endpoint) -> str:
    first = endpoint.template.removeprefix("/api").strip("/").split("/")[0]
    value = REAL.get(first, "999")
    return re.sub(r"\{[^}]+\}", value, endpoint.template)


def changing(served: Served) -> list[Endpoint]:
    return [
        e
        for e in endpoints(served)
        if e.method in UNSAFE and not e.public and e.template != "/logout"
    ]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with serving(tmp_path / "home") as s:
        build_world(tmp_path, s)
        yield s


def send(member: Member, endpoint: Endpoint, *, api: bool) -> tuple[int, str]:
    client = member.api if api else member.ui
    body = {"json": {}} if endpoint.is_api else {"data": {}}
    resp = client.request(endpoint.method, fill(endpoint), **body)  # type: ignore[arg-type]
    return resp.status_code, resp.text


def _viewer_may(endpoint: Endpoint) -> bool:
    found = NOT_CHANGES.get((endpoint.method, endpoint.template))
    return found is not None and found.role == "viewer"


def test_a_viewer_is_refused_every_change_and_nothing_changes(served: Served, team: Team) -> None:
    viewer = team("vera", "viewer")
    before = snapshot(served)
    refused = [e for e in changing(served) if not _viewer_may(e)]
    assert len(refused) >= 30, refused  # the enumeration sees every router
    for endpoint in refused:
        # the API by token and by the UI's own session; pages by the session
        for api in (True, False) if endpoint.is_api else (False,):
            status, text = send(viewer, endpoint, api=api)
            where = f"{endpoint.method} {endpoint.template} (token={api}) -> {status}"
            assert status == 403, where
            assert "vera is a viewer" in text, where
    assert snapshot(served) == before


def test_what_a_viewer_may_still_post_is_named_and_reads_only(served: Served, team: Team) -> None:
    routes = {(e.method, e.template) for e in changing(served)}
    assert set(NOT_CHANGES) <= routes, set(NOT_CHANGES) - routes  # every entry a real route
    viewer = team("vera", "viewer")
    query = {"events": ["View"], "start": "2024-05-01", "end": "2024-05-01"}
    ran = viewer.api.post("/api/query/segmentation", json=query)
    assert ran.status_code == 200, ran.text
    tested = viewer.api.post("/api/sources/people/test")
    assert tested.status_code == 200 and tested.json()["ok"] is True
    # Test mapping of an unsaved source runs any query with a saved connection: an editor's
    draft = {"connection": "lake", "query": "select 1 as uid", "user_id": "uid"}
    unsaved = viewer.api.post("/api/sources/test", json=draft)
    assert unsaved.status_code == 403 and "vera is a viewer" in unsaved.text
    own = viewer.api.post("/api/tokens", json={"label": "my script"})
    assert own.status_code == 201 and own.json()["token"].startswith("ps_")


def test_a_viewer_reads_every_page_and_endpoint_but_user_management_and_audit(
    served: Served, team: Team
) -> None:
    viewer = team("vera", "viewer")
    reads = [e for e in endpoints(served) if e.method == "GET" and not e.public]
    assert len(reads) >= 20
    for endpoint in reads:
        status, _ = send(viewer, endpoint, api=endpoint.is_api)
        where = f"GET {endpoint.template} -> {status}"
        closed = endpoint.template.split("/")[-1] in ("new", "edit", "delete") or any(
            endpoint.template.startswith(p)
            for p in ("/members", "/api/members", "/audit", "/api/audit")
        )
        assert (status == 403) == closed, where


def test_pages_offer_a_viewer_no_change_buttons(served: Served, team: Team) -> None:
    viewer = team("vera", "viewer")
    editor = team("ed", "editor")
    for page in ("/", "/sources/people", "/properties", "/projects", "/account"):
        seen = viewer.ui.get(page)
        assert seen.status_code == 200, page
        forms = _POST_FORM.findall(seen.text)
        shown = [f for f in forms if " hidden" not in f and "/logout" not in f]
        assert all("data-any-role" in f for f in shown), (page, shown)
        editable = [f for f in _POST_FORM.findall(editor.ui.get(page).text) if " hidden" in f]
        assert not editable, (page, editable)
    assert "Change frequency" in editor.ui.get("/sources/people").text


def test_only_admins_manage_users(served: Served, team: Team) -> None:
    editor = team("ed", "editor")
    before = snapshot(served)
    management = [
        e
        for e in endpoints(served)
        if e.template.startswith(("/members", "/api/members")) and e.method != "HEAD"
    ]
    assert {e.method for e in management} >= {"GET", "POST", "PATCH"}
    for endpoint in management:
        for api in (True, False) if endpoint.is_api else (False,):
            status, text = send(editor, endpoint, api=api)
            where = f"{endpoint.method} {endpoint.template} -> {status}"
            assert status == 403 and "only an admin manages users" in text, where
    assert snapshot(served) == before
    # an editor changes everything else: a source's frequency, through the API and a form
    changed = editor.api.patch("/api/sources/people", json={"frequency": "6h"})
    assert changed.status_code == 200 and changed.json()["frequency"] == "6h"
    assert editor.ui.get("/audit").status_code == 200
