"""The projects page on a real server: create, see the key once, rotate it, delete."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.server.conftest import Served, serving

EVENT = {"event_type": "Open", "user_id": "user-0001"}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with serving(tmp_path / "home") as s:
        yield s


def _send(served: Served, key: str) -> int:
    return served.api.post("/2/httpapi", json={"api_key": key, "events": [EVENT]}).status_code


def _shown_key(page: httpx.Response) -> str:
    found = re.search(r'id="api-key"[^>]*value="([0-9a-f]{32})"', page.text)
    assert found, "no API key on the page"
    return found.group(1)


def _post(served: Served, path: str, **data: str) -> httpx.Response:
    """Post a form as the signed-in browser does, then follow the 303 once."""
    resp = served.ui.post(path, data=data)
    assert resp.status_code == 303, resp.text
    return served.ui.get(resp.headers["location"])


def test_pages_need_a_login(served: Served) -> None:
    with httpx.Client(base_url=served.url) as anon:
        resp = anon.get("/projects")
        assert resp.status_code == 303
        assert resp.headers["location"].startswith("/login?next=%2Fprojects")
        assert anon.post("/projects", data={"name": "web"}).status_code == 303
    assert served.api.get("/api/projects").json() == []


def test_empty_state_and_nav(served: Served) -> None:
    page = served.ui.get("/projects")
    assert page.status_code == 200
    assert "No projects yet." in page.text and "Create one to send events." in page.text
    assert '<a href="/projects" aria-current="page">Projects</a>' in page.text


def test_create_shows_the_key_once_and_it_works(served: Served) -> None:
    page = _post(served, "/projects", name="web")
    key = _shown_key(page)
    assert "shown only this once" in page.text
    assert f"{served.url}/2/httpapi" in html.unescape(page.text)  # the curl example
    assert page.headers["cache-control"] == "no-store"
    assert _send(served, key) == 200

    again = served.ui.get(page.url)  # a reload
    assert key not in again.text and 'id="api-key"' not in again.text
    assert "shown once and is not kept" in again.text
    listing = served.ui.get("/projects").text
    assert key not in listing
    row = re.search(r'<tr data-project="web">.*?</tr>', listing, re.S)
    assert row and '<td class="num">1</td>' in row.group(0)  # the event sent above


def test_invalid_and_duplicate_names_are_refused_beside_the_field(served: Served) -> None:
    bad = served.ui.post("/projects", data={"name": "my app/ios"})
    assert bad.status_code == 422
    assert 'id="err-name"' in bad.text and 'value="my app/ios"' in bad.text
    assert "cannot be a project name" in html.unescape(bad.text)
    _post(served, "/projects", name="web")
    twice = served.ui.post("/projects", data={"name": "web"})
    assert twice.status_code == 422
    assert "exists already" in twice.text and 'id="err-name"' in twice.text
    assert [p["name"] for p in served.api.get("/api/projects").json()] == ["web"]


def test_rotate_makes_the_old_key_fail(served: Served) -> None:
    old = _shown_key(_post(served, "/projects", name="web"))
    page = _post(served, "/projects/web/rotate")
    new = _shown_key(page)
    assert new != old and "old one no longer works" in page.text
    assert _send(served, old) == 400  # Amplitude's answer to a wrong key
    assert _send(served, new) == 200


def test_delete_asks_first_then_removes_project_and_events(served: Served) -> None:
    key = _shown_key(_post(served, "/projects", name="web"))
    assert _send(served, key) == 200
    confirm = served.ui.get("/projects/web/delete")
    assert confirm.status_code == 200
    assert "deletes its 1 stored event too" in confirm.text
    assert served.api.get("/api/projects").json()[0]["name"] == "web"  # asking deletes nothing

    page = _post(served, "/projects/web/delete")
    assert "Project deleted with all its events." in page.text
    assert "No projects yet." in page.text
    assert served.api.get("/api/projects").json() == []
    assert _send(served, key) == 400
    assert served.ui.get("/projects/web/delete").status_code == 404


def test_cross_site_posts_are_refused(served: Served) -> None:
    _post(served, "/projects", name="web")
    resp = served.ui.post("/projects/web/delete", headers={"Origin": "https://evil.example"})
    assert resp.status_code == 403
    assert [p["name"] for p in served.api.get("/api/projects").json()] == ["web"]
