"""In Debian's Chromium: an admin invites an editor from the Members page, the editor sets a
password through the link and changes a source's frequency; a viewer sees no change buttons
and is refused a change sent by hand; the Audit page names the editor beside their change."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import chromium_page
from tests.security.team import build_world
from tests.server.conftest import PASSWORD, Served, serving

pytestmark = pytest.mark.browser


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with serving(tmp_path / "home") as s:
        build_world(tmp_path, s)  # a Delta connection "lake" and a synced source "people"
        yield s


def log_in(page: Any, served: Served, name: str, password: str) -> None:
    page.goto(f"{served.url}/login")
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def log_out(page: Any) -> None:
    from playwright.sync_api import expect

    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()


def accept(page: Any, link: str, password: str) -> None:
    page.goto(link)
    page.get_by_label("New password").fill(password)
    page.get_by_label("Type it again").fill(password)
    page.get_by_role("button", name="Set password and log in").click()


def test_invite_an_editor_who_changes_a_source_a_viewer_who_cannot_and_audit_it(
    served: Served,
) -> None:
    from playwright.sync_api import expect

    with chromium_page(height=900) as page:
        log_in(page, served, "admin", PASSWORD)
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Members").click()
        page.get_by_label("User name").fill("ana")
        page.locator("#role").select_option("editor")
        page.get_by_role("button", name="Make invitation link").click()
        link = page.get_by_role("textbox", name="Link").input_value()
        assert link.startswith(f"{served.url}/login/invite/")
        expect(page.locator("tr[data-user='ana']")).to_contain_text("invited")
        log_out(page)

        accept(page, link, "ana-secret-1")
        expect(page.locator(".who")).to_have_text("ana · editor")
        log_out(page)
        log_in(page, served, "ana", "ana-secret-1")  # the chosen password opens it again
        page.get_by_role("link", name="people", exact=True).click()
        page.get_by_label("Frequency").select_option("6h")
        page.get_by_role("button", name="Change frequency").click()
        expect(page.get_by_role("status")).to_have_text("Frequency changed.")
        expect(page.get_by_label("Frequency")).to_have_value("6h")
        assert served.api.get("/api/sources/people").json()["frequency"] == "6h"
        log_out(page)

        # a viewer, invited through the API
        invited = served.api.post("/api/members", json={"name": "vera", "role": "viewer"})
        assert invited.status_code == 201, invited.text
        accept(page, invited.json()["invite_url"], "vera-secret-1")
        expect(page.locator(".who")).to_have_text("vera · viewer")
        page.goto(f"{served.url}/sources/people")
        expect(page.get_by_role("heading", name="people")).to_be_visible()
        expect(page.get_by_role("cell", name="success").first).to_be_visible()  # run history
        for button in ("Sync now", "Resync", "Pause", "Change frequency"):
            expect(page.get_by_role("button", name=button)).to_have_count(0)
        for link_name in ("Edit", "Delete people…"):
            expect(page.get_by_role("link", name=link_name, exact=True)).to_have_count(0)
        # the same change sent by hand with the viewer's session is refused
        refused = page.request.post(
            f"{served.url}/sources/people/frequency", form={"frequency": "1h"}
        )
        assert refused.status == 403
        assert "vera is a viewer" in refused.text()
        assert served.api.get("/api/sources/people").json()["frequency"] == "6h"
        log_out(page)

        log_in(page, served, "admin", PASSWORD)
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit").click()
        change = page.locator("#audit-table tbody tr", has_text="source.update")
        expect(change).to_have_count(1)
        expect(change.locator("td").nth(1)).to_have_text("ana")
        expect(change.locator("td").nth(2)).to_have_text("ui")
        expect(change.locator("td").nth(4)).to_have_text("source people")
        expect(change.locator("td").nth(5)).to_have_text("frequency")
        invites = page.locator("#audit-table tbody tr", has_text="user.invite")
        expect(invites).to_have_count(2)
