"""In Debian's Chromium: a table keeping changes only 6 hours is added as a CDC source
(Test mapping judges retention against the frequency that will be chosen), and a
replaced table shows the UI's fix, which leads to the Resync that recovers it.

Screenshots go to ``test-artifacts/ui-fixes/`` at the repository root.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from tests.browser import chromium_page
from tests.conftest import Warehouse
from tests.server.conftest import PASSWORD, Served, serving

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui-fixes"
CLI_TEXT = re.compile(r"(?<![\w-])--[a-z]|profilesync (sync|source|connection|config|events)\b")


def users(ids: list[int], titles: list[str]) -> pa.Table:
    return pa.table({"uid": pa.array(ids, pa.int64()), "title": titles})


@pytest.fixture
def page() -> Iterator[Any]:
    with chromium_page(height=900) as opened:
        yield opened


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _log_in(page: Any, served: Served) -> None:
    page.goto(served.url)
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def _add_source(page: Any, lake: Warehouse, table: str) -> None:
    """Through the connection, table, mapping and data steps to Test mapping."""
    from playwright.sync_api import expect

    page.get_by_role("link", name="+ Add source").first.click()
    page.get_by_role("link", name="Delta Lake").click()
    page.get_by_label("Connection name").fill("lake")
    page.get_by_label("Directory of Delta tables").fill(str(lake.root))
    page.get_by_role("button", name="Save connection and continue").click()
    page.get_by_label(table, exact=True).check()
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_label("user_id")).to_have_value("uid")
    page.get_by_role("button", name="+ Add field").click()
    page.locator("select[name=prop_column]").nth(0).select_option("title")
    page.locator("input[name=prop_name]").nth(0).fill("Title")
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_label("Import strategy")).to_have_value("cdc")
    page.get_by_role("button", name="Test mapping").click()


def test_a_table_keeping_changes_6_hours_is_added_as_cdc_every_6_hours(
    tmp_path: Path, page: Any
) -> None:
    from playwright.sync_api import expect

    lake = Warehouse(tmp_path / "lake")
    lake.create(
        "prod.short",
        users([100001, 100002], ["Analyst", "Engineer"]),
        **{"delta.logRetentionDuration": "interval 6 hours"},
    )
    with serving(tmp_path / "home") as served:
        _log_in(page, served)
        _add_source(page, lake, "prod.short")
        # judged against the frequency the next step will offer, not a failure at 12 hours
        expect(page.locator("#test-result")).to_have_text("passed")
        note = page.locator("[data-check='frequency']")
        expect(note).to_have_attribute("data-level", "warn")
        expect(note).to_contain_text("every 12 hours is too long for this table")
        expect(note).to_contain_text("choose every 6 hours or more often on the next step")
        shot(page, "test-mapping-short-retention")
        page.get_by_role("button", name="Next").click()

        frequency = page.get_by_label("Refresh frequency")
        expect(frequency).to_have_value("6h")  # moved to what the retention covers
        for value in ("12h", "1d", "7d"):
            expect(frequency.locator(f"option[value='{value}']")).to_be_disabled()
        expect(frequency.locator("option[value='3h']")).to_be_enabled()
        page.get_by_label("Source name").fill("short")
        shot(page, "frequency-short-retention")
        page.get_by_role("button", name="Save source").click()
        expect(page.get_by_text("Source saved.")).to_be_visible()
        assert served.api.get("/api/sources/short").json()["frequency"] == "6h"
        # the source page's own frequency list refuses the same choices
        expect(page.locator("#frequency option[value='12h']")).to_be_disabled()
        expect(page.locator("#frequency-limit")).to_contain_text("interval 6 hours")
        page.get_by_role("button", name="Sync now").click()
        expect(page.locator("#runs + .table-wrap tbody tr.run").first).to_contain_text(
            "success", timeout=30_000
        )
        expect(page.locator("#checkpoint")).to_have_text("version 0 of the Delta table")


def test_a_replaced_table_shows_the_ui_fix_and_it_recovers(tmp_path: Path, page: Any) -> None:
    from playwright.sync_api import expect

    lake = Warehouse(tmp_path / "lake")
    lake.create("prod.users", users([100001, 100002], ["Analyst", "Engineer"]))
    with serving(tmp_path / "home") as served:
        _log_in(page, served)
        _add_source(page, lake, "prod.users")
        page.get_by_role("button", name="Next").click()
        page.get_by_label("Source name").fill("users")
        page.get_by_role("button", name="Save source").click()
        page.get_by_role("button", name="Sync now").click()
        runs = page.locator("#runs + .table-wrap tbody tr.run")
        expect(runs.first).to_contain_text("success", timeout=30_000)

        shutil.rmtree(lake.path("prod.users"))
        lake.create("prod.users", users([100001, 100003], ["Lead", "Designer"]))
        page.get_by_role("button", name="Sync now").click()
        stopped = page.locator("#stopped")
        expect(stopped).to_contain_text("was dropped and re-created", timeout=30_000)
        expect(page.locator("[data-refresh]")).to_have_count(0, timeout=30_000)
        main = page.locator("main").inner_text()
        assert not CLI_TEXT.search(main), main
        shot(page, "replaced-table-ui-fix")
        stopped.get_by_role("link", name="Resync").click()
        expect(page).to_have_url(re.compile(r"/sources/users#resync$"))
        page.locator("#resync").get_by_role("button", name="Resync").click()
        expect(runs.first).to_contain_text("resync", timeout=30_000)
        expect(runs.first).to_contain_text("success", timeout=30_000)
        expect(page.locator("#stopped")).to_have_count(0)
        page.get_by_role("link", name="Profiles", exact=True).click()
        page.get_by_label("user_id").fill("100003")
        page.get_by_role("button", name="Look up").click()
        expect(page.locator("[data-property='Title']")).to_have_text("Designer")
