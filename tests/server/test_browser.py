"""End to end in Debian's Chromium: log in, add a Delta source through every step, sync, see it.

Screenshots of each step go to ``test-artifacts/ui/`` at the repository root.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from tests.browser import chromium_page
from tests.conftest import Warehouse
from tests.server.conftest import PASSWORD, Served, serving

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"


def users(ids: list[int], titles: list[str], dmas: list[str]) -> pa.Table:
    return pa.table({"uid": pa.array(ids, pa.int64()), "title": titles, "dma": dmas})


@pytest.fixture
def browser_page() -> Iterator[Any]:
    with chromium_page(height=800) as page:
        yield page


class Shots:
    def __init__(self, page: Any) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        for old in SHOTS.glob("*.png"):
            old.unlink()
        self.page, self.n = page, 0

    def __call__(self, name: str) -> None:
        self.n += 1
        self.page.screenshot(path=str(SHOTS / f"{self.n:02d}-{name}.png"), full_page=True)


def test_add_a_delta_source_in_the_browser(tmp_path: Path, browser_page: Any) -> None:
    from playwright.sync_api import expect

    lake = Warehouse(tmp_path / "lake")
    ids = [100001, 100002, 100003, 123]
    lake.create(
        "prod.users",
        users(
            ids,
            ["Analyst", "Engineer", "Designer", "Intern"],
            ["Boston", "Chicago", "Seattle", "Boston"],
        ),
    )
    lake.create(
        "prod.users_nocdf",
        users(ids[:2], ["Analyst", "Engineer"], ["Boston", "Chicago"]),
        cdf=False,
    )
    page = browser_page
    shot = Shots(page)
    with serving(tmp_path / "home") as served:
        _log_in(page, served, shot)
        _set_up_connection(page, lake, shot)
        _map_columns(page, "prod.users_nocdf", shot, first=True)
        _test_mapping(page, shot, passes=False)
        for _ in range(3):  # back to "Select table"
            page.get_by_role("button", name="Back").click()
        expect(page.locator("ol.steps [aria-current=step]")).to_have_text("Select table")
        _map_columns(page, "prod.users", shot, first=False)
        _test_mapping(page, shot, passes=True)
        _save(page, shot)
        _sync_now(page, 1, shot)
        _look_up(page, "100001", "Analyst", shot, "profile")
        lake.update("prod.users", "uid = 100001", {"title": "'Head of Data'"})
        page.goto(f"{served.url}/sources/users")
        _sync_now(page, 2, shot)
        _look_up(page, "100001", "Head of Data", shot, "profile-after-change")
        _tour(page, served, shot)


def _log_in(page: Any, served: Served, shot: Shots) -> None:
    from playwright.sync_api import expect

    page.goto(served.url)
    expect(page).to_have_url(f"{served.url}/login?next=%2F")
    shot("login")
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_text("No sources yet — add one.")).to_be_visible()
    shot("overview-empty")


def _set_up_connection(page: Any, lake: Warehouse, shot: Shots) -> None:
    from playwright.sync_api import expect

    page.get_by_role("link", name="+ Add source").first.click()
    page.get_by_role("link", name="Delta Lake").click()
    page.get_by_label("Connection name").fill("lake")
    page.get_by_label("Directory of Delta tables").fill(str(lake.root / "missing"))
    page.get_by_role("button", name="Save connection and continue").click()
    error = page.locator("#err-cfg_path")
    expect(error).to_contain_text("is not a directory")  # beside its field
    shot("connection-error")
    page.get_by_label("Directory of Delta tables").fill(str(lake.root))
    shot("connection")
    page.get_by_role("button", name="Save connection and continue").click()
    expect(page.locator("ol.steps [aria-current=step]")).to_have_text("Select table")


def _map_columns(page: Any, table: str, shot: Shots, *, first: bool) -> None:
    from playwright.sync_api import expect

    search = page.get_by_label("Search tables")
    search.fill(table.split(".")[1])
    expect(page.get_by_label(table, exact=True)).to_be_visible()
    if table == "prod.users_nocdf":
        expect(page.get_by_label("prod.users", exact=True)).to_be_hidden()  # filtered out
    page.get_by_label(table, exact=True).check()
    shot(f"table-{table}")
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_label("user_id")).to_have_value("uid")  # guessed, first
    if first:
        page.get_by_role("button", name="+ Add field").click()
        page.locator("select[name=prop_column]").nth(0).select_option("title")
        page.locator("input[name=prop_name]").nth(0).fill("Title")
        page.get_by_role("button", name="+ Add field").click()
        page.locator("select[name=prop_column]").nth(1).select_option("dma")
        expect(page.locator("input[name=prop_name]").nth(1)).to_have_value("dma")
        page.locator("input[name=prop_name]").nth(1).fill("DMA")
        shot("mapping")
    else:
        expect(page.locator("input[name=prop_name]")).to_have_count(2)  # kept from before
    page.get_by_role("button", name="Next").click()
    if table == "prod.users_nocdf":  # no change data feed: the snapshot diff is pre-selected
        expect(page.get_by_label("Import strategy")).to_have_value("diff")
        page.get_by_label("Import strategy").select_option("cdc")  # to see its check fail
    else:
        expect(page.get_by_label("Import strategy")).to_have_value("cdc")  # pre-selected
    if first:
        shot("select-data")
    page.get_by_role("button", name="Test mapping").click()


def _test_mapping(page: Any, shot: Shots, *, passes: bool) -> None:
    from playwright.sync_api import expect

    cdf = page.locator("[data-check='change data feed']")
    if passes:
        expect(page.locator("#test-result")).to_have_text("passed")
        expect(cdf).to_have_attribute("data-level", "pass")
        expect(page.locator("#preview")).to_contain_text("100002")
        expect(page.locator("#rejected")).to_contain_text("shorter than 5 characters")
        shot("test-mapping-pass")
        page.get_by_role("button", name="Next").click()
    else:
        expect(page.locator("#test-result")).to_have_text("failed")
        expect(cdf).to_have_attribute("data-level", "fail")
        expect(cdf).to_contain_text(
            "/prod/users_nocdf` SET TBLPROPERTIES (delta.enableChangeDataFeed = true)"
        )
        expect(page.get_by_role("button", name="Next")).to_be_disabled()
        shot("test-mapping-cdf-off")


def _save(page: Any, shot: Shots) -> None:
    from playwright.sync_api import expect

    expect(page.get_by_label("Refresh frequency")).to_have_value("12h")  # the default
    page.get_by_label("Source name").fill("my users!")
    page.get_by_role("button", name="Save source").click()
    expect(page.locator("#err-name")).to_contain_text("is not valid")  # beside the field
    page.get_by_label("Source name").fill("users")
    shot("name-and-frequency")
    page.get_by_role("button", name="Save source").click()
    expect(page.get_by_role("heading", name="users")).to_be_visible()
    expect(page.get_by_text("Source saved.")).to_be_visible()
    shot("source-saved")


def _sync_now(page: Any, runs: int, shot: Shots) -> None:
    from playwright.sync_api import expect

    page.get_by_role("button", name="Sync now").click()
    rows = page.locator("#runs + .table-wrap tbody tr.run")
    expect(rows).to_have_count(runs, timeout=30_000)  # the page refreshes until it is done
    expect(page.locator("[data-refresh]")).to_have_count(0, timeout=30_000)
    expect(rows.first).to_contain_text("success")
    expect(rows.first).to_contain_text("initial" if runs == 1 else "incremental")
    if runs == 1:
        expect(page.locator("#rejected")).to_be_visible()
    shot(f"source-after-sync-{runs}")


def _look_up(page: Any, user_id: str, title: str, shot: Shots, name: str) -> None:
    from playwright.sync_api import expect

    page.get_by_role("link", name="Profiles", exact=True).click()
    page.get_by_label("user_id").fill(user_id)
    page.get_by_role("button", name="Look up").click()
    expect(page.locator("[data-property='Title']")).to_have_text(title)
    expect(page.locator("[data-property='DMA']")).to_have_text("Boston")
    shot(name)


def _tour(page: Any, served: Served, shot: Shots) -> None:
    from playwright.sync_api import expect

    page.get_by_role("link", name="Sources", exact=True).click()
    expect(page.get_by_role("link", name="users", exact=True)).to_be_visible()
    shot("overview")
    page.get_by_role("link", name="Properties", exact=True).click()
    expect(page.locator("tbody tr")).to_have_count(2)
    shot("properties")
    page.get_by_role("link", name="Usage", exact=True).click()
    expect(page.locator("svg.chart")).to_be_visible()
    shot("usage")
