"""Funnels and retention in Debian's Chromium on the demo's home: build a two-step funnel,
see its chart and table, then retention grouped by a synced property; no console errors
(a script refused by the Content-Security-Policy would be one)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from profilesync.demo.delta import run_demo
from tests.browser import chromium_page
from tests.server.conftest import PASSWORD, Served, serving

pytestmark = pytest.mark.browser


@pytest.fixture
def page() -> Iterator[Any]:
    with chromium_page(height=900) as page:
        yield page


def test_a_funnel_and_retention_by_seniority(tmp_path: Path, page: Any) -> None:
    run_demo(tmp_path / "demo", Console(file=io.StringIO()))
    with serving(tmp_path / "demo" / "home") as served:
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("requestfailed", lambda r: problems.append(f"failed: {r.url}"))
        _log_in(page, served)
        _funnel(page, served)
        _retention(page, served)
        assert not problems, problems


def _log_in(page: Any, served: Served) -> None:
    from playwright.sync_api import expect

    page.goto(f"{served.url}/funnels")
    page.fill("#username", "admin")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Funnels")


def _funnel(page: Any, served: Served) -> None:
    from playwright.sync_api import expect

    page.select_option("#step-1", "Page Viewed")
    page.select_option("#step-2", "Feature Used")
    with page.expect_navigation():
        page.click("#add-step")  # a button back to the form: no JavaScript needed
    expect(page.locator("select[name=step]")).to_have_count(3)
    with page.expect_navigation():
        page.click("text=Remove >> nth=1")  # drop Feature Used again
    expect(page.locator("select[name=step]")).to_have_count(2)
    page.select_option("#step-2", "Purchase Completed")
    page.fill("#window", "2")
    page.select_option("#unit", "d")
    with page.expect_navigation():
        page.click(".actions >> text=Show funnel")

    want = served.api.post(
        "/api/query/funnel", json={"steps": ["Page Viewed", "Purchase Completed"], "window": "2d"}
    ).json()["steps"]
    page.wait_for_function("window.funnelChart !== undefined")
    chart = page.evaluate(
        """() => {
            const c = Chart.getChart(document.getElementById('chart'));
            return {type: c.config.type, labels: c.data.labels,
                    data: c.data.datasets.map(d => d.data)};
        }"""
    )
    assert chart["type"] == "bar"
    assert chart["labels"] == ["1. Page Viewed", "2. Purchase Completed"]
    assert chart["data"] == [[100.0, round(want[1]["conversion"] * 100, 1)]]
    rows = page.locator("table[data-group='All users'] tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(1).locator("td").nth(1)).to_have_text(str(want[1]["users"]))
    expect(rows.nth(1).locator("td").nth(2)).to_have_text(f"{want[1]['conversion']:.1%}")
    canvas = page.locator("#chart").bounding_box()
    assert canvas and canvas["width"] > 600 and canvas["height"] > 200


def _retention(page: Any, served: Served) -> None:
    from playwright.sync_api import expect

    page.click("nav >> text=Retention")
    expect(page.locator("h1")).to_have_text("Retention")
    page.select_option("#start_event", "Page Viewed")
    page.select_option("#return_event", "Purchase Completed")
    page.select_option("#interval", "week")
    page.fill("#buckets", "3")
    page.select_option("#group_by", "profile:Seniority")
    with page.expect_navigation():
        page.click("text=Show retention")

    answer = served.api.post(
        "/api/query/retention",
        json={"start_event": "Page Viewed", "return_event": "Purchase Completed",
              "interval": "week", "buckets": 3, "group_by": {"kind": "profile", "name": "Seniority"}},
    ).json()  # fmt: skip
    labels = [g["label"] for g in answer["groups"]]
    page.wait_for_function("window.retentionChart !== undefined")
    curves = page.evaluate(
        "() => Chart.getChart(document.getElementById('chart')).data.datasets.map(d => d.label)"
    )
    assert curves == labels and "principal" in labels
    expect(page.locator("table.retention-table")).to_have_count(1 + len(labels))
    first = next(c for c in answer["groups"][0]["cohorts"] if c["users"])
    row = page.locator(f"table[data-group='{labels[0]}'] tr[data-start='{first['start']}'] td")
    expect(row.nth(1)).to_have_text(str(first["users"]))
