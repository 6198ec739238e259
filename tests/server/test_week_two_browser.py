"""Week two, in Debian's Chromium: a synced Delta source gets a new property through its Edit
page and sees it back-filled; its connection breaks, Sync now fails on the source page in the
UI's words and a webhook is told once; the connection is fixed, the next sync recovers, the
webhook is told once more and the Alerts page shows both deliveries."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from tests.alerts.conftest import Webhook
from tests.browser import chromium_page
from tests.conftest import Warehouse
from tests.security.team import synced_delta_source
from tests.server.conftest import PASSWORD, Served, serving

pytestmark = pytest.mark.browser

#: advice for the command line, which a page must not give (the CLI refuses to run next to
#: ``serve``)
CLI_ADVICE = re.compile(r"profilesync (sync|source|connection)\b|(?<![\w-])--[a-z]")


def week_one(served: Served, lake: Warehouse, webhook: Webhook) -> None:
    """What the first week left: a Delta source synced with one property, and a webhook."""
    lake.create(
        "prod.users",
        pa.table(
            {
                "uid": pa.array([100001, 100002, 100003], pa.int64()),
                "title": ["Analyst", "Engineer", "Designer"],
                "dma": ["Boston", "Chicago", "Seattle"],
            }
        ),
    )
    synced_delta_source(served, lake, "users", {"dma": "DMA"})
    hook = {"name": "ops-hook", "kind": "webhook", "url": webhook.url}
    assert served.api.post("/api/alerts", json=hook).status_code == 201


def sync_now(page: Any, served: Served, runs: int) -> dict[str, Any]:
    """Press Sync now on the source page; the page once the run is over, and that run."""
    page.goto(f"{served.url}/sources/users")
    page.get_by_role("button", name="Sync now").click()
    done = served.wait_for_run("users", runs)
    page.goto(f"{served.url}/sources/users")
    return done[0]


def test_week_two_edit_a_mapping_break_and_fix_the_connection(tmp_path: Path) -> None:
    from playwright.sync_api import expect

    lake = Warehouse(tmp_path / "lake")
    webhook = Webhook()
    try:
        with serving(tmp_path / "home") as served, chromium_page(height=900) as page:
            week_one(served, lake, webhook)
            page.goto(f"{served.url}/sources/users")
            page.get_by_label("User name").fill("admin")
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Log in").click()

            # a new property, back-filled
            page.get_by_role("link", name="Edit", exact=True).click()
            page.get_by_label("Column of new property 1").select_option("title")
            page.get_by_label("Display name of new property 1").fill("Title")
            page.get_by_role("button", name="Review changes").click()
            expect(page.locator("#edit-plan")).to_contain_text("Title (new): back-filled")
            page.get_by_role("button", name="Save and resync now").click()
            assert served.wait_for_run("users", 2)[0]["status"] == "success"
            page.goto(f"{served.url}/profiles?user_id=100002")
            expect(page.locator("[data-property='Title']")).to_contain_text("Engineer")
            expect(page.locator("[data-property='DMA']")).to_contain_text("Chicago")

            # the lake moves: the connection now points at nothing
            moved = tmp_path / "lake-moved"
            shutil.move(lake.root, moved)
            failed = sync_now(page, served, 3)
            assert failed["status"] == "failed"
            shown = page.locator("tr.run-error").first
            expect(shown).to_contain_text(f"the directory {lake.root} of connection 'lake'")
            fix = shown.locator("[data-fix]")
            expect(fix).to_contain_text("What to do: Edit the connection's settings")
            expect(page.locator("#connection")).to_have_attribute("href", "/connections/lake")
            assert not CLI_ADVICE.search(page.locator("main").inner_text())
            assert webhook.events() == ["run_failed"]
            sync_now(page, served, 4)  # still broken: no one is told twice
            assert webhook.events() == ["run_failed"]
            failure = webhook.bodies[0]["profilesync"]
            assert (failure["source"], failure["run_id"]) == ("users", failed["id"])
            assert failure["error_code"] == "connection_settings"

            # fixed on the connection's Edit page, where the fix leads: tried, then saved
            page.locator("tr.run-error [data-fix]").first.get_by_role("link").click()
            expect(page.get_by_role("heading", name="Edit connection lake")).to_be_visible()
            directory = page.get_by_label("Directory of Delta tables")
            expect(directory).to_have_value(str(lake.root))
            directory.fill(str(moved))
            page.get_by_role("button", name="Test and save").click()
            expect(page.locator("[data-setting='path']")).to_have_text(str(moved))
            recovered = sync_now(page, served, 5)
            assert recovered["status"] == "success"
            expect(page.locator("tr.run-error")).to_have_count(2)  # the history keeps both
            assert webhook.events() == ["run_failed", "recovered"]
            page.goto(f"{served.url}/profiles?user_id=100003")
            expect(page.locator("[data-property='Title']")).to_contain_text("Designer")

            page.get_by_role("navigation", name="Main").get_by_role("link", name="Alerts").click()
            rows = page.locator("#deliveries tbody tr")
            expect(rows).to_have_count(2)
            expect(rows.nth(0)).to_contain_text("Source users recovered")
            expect(rows.nth(1)).to_contain_text("Sync of users failed")
            for row in (rows.nth(0), rows.nth(1)):
                expect(row).to_contain_text("ops-hook")
                expect(row).to_contain_text("HTTP 200: ok")
    finally:
        webhook.close()
