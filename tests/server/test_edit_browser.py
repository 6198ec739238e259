"""In Debian's Chromium: edit a source's mapping, add a property, save and resync, and see the
new property's values on a profile."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from tests.browser import chromium_page
from tests.conftest import Warehouse
from tests.server.conftest import PASSWORD, serving

pytestmark = pytest.mark.browser


def test_add_a_property_in_the_edit_page_and_see_it_back_filled(tmp_path: Path) -> None:
    from playwright.sync_api import expect

    lake = Warehouse(tmp_path / "lake")
    lake.create(
        "prod.users",
        pa.table(
            {
                "uid": pa.array([100001, 100002], pa.int64()),
                "title": ["Analyst", "Engineer"],
                "dma": ["Boston", "Chicago"],
            }
        ),
    )
    with serving(tmp_path / "home") as served, chromium_page(height=900) as page:
        api = served.api
        api.post(
            "/api/connections",
            json={"name": "lake", "kind": "delta", "config": {"path": str(lake.root)}},
        )
        api.post(
            "/api/sources",
            json={
                "name": "users",
                "connection": "lake",
                "table": "prod.users",
                "user_id": "uid",
                "properties": [{"column": "dma", "name": "DMA"}],
            },
        )
        assert api.post("/api/sources/users/sync?wait=true").json()["status"] == "success"

        page.goto(f"{served.url}/sources/users")
        page.get_by_label("User name").fill("admin")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.get_by_role("link", name="Edit", exact=True).click()
        expect(page.get_by_role("heading", name="Edit source users")).to_be_visible()
        page.get_by_label("Column of new property 1").select_option("title")
        page.get_by_label("Display name of new property 1").fill("Title")
        page.get_by_role("button", name="Review changes").click()

        expect(page.locator("#edit-plan")).to_contain_text(
            "Title (new): back-filled by a resync at the next sync"
        )
        expect(page.locator("#test-result")).to_have_text("passed")
        expect(page.locator("#preview")).to_contain_text("Analyst")
        page.get_by_role("button", name="Save and resync now").click()

        expect(page).to_have_url(f"{served.url}/sources/users?notice=resync")
        runs = served.wait_for_run("users", 2)
        assert (runs[0]["mode"], runs[0]["updated"]) == ("resync", 2)
        page.goto(f"{served.url}/profiles?user_id=100001")
        expect(page.locator("[data-property='Title']")).to_contain_text("Analyst")
        expect(page.locator("[data-property='DMA']")).to_contain_text("Boston")
        page.goto(f"{served.url}/sources/users")
        expect(page.locator("#resync-pending")).to_have_count(0)
