"""The chart page in Debian's Chromium: pick events and a profile group-by, see the series."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import chromium_page
from tests.events.conftest import PASSWORD, build_world, serving

pytestmark = pytest.mark.browser


@pytest.fixture
def page() -> Iterator[Any]:
    with chromium_page(height=900) as page:
        yield page


def test_chart_grouped_by_a_profile_property(tmp_path: Path, page: Any) -> None:
    from playwright.sync_api import expect

    build_world(tmp_path).store.close()
    with serving(tmp_path / "home") as served:
        failed: list[str] = []
        page.on("requestfailed", lambda r: failed.append(r.url))
        page.goto(f"{served.url}/segmentation")
        page.fill("#username", "admin")
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        expect(page.locator("h1")).to_have_text("Segmentation")

        page.select_option("#event", ["Purchase"])
        page.select_option("#group_by", "profile:Plan")
        page.select_option("#chart_type", "bar")
        page.fill("#start", "2024-05-01")
        page.fill("#end", "2024-05-03")
        page.select_option("select[name=filter_prop] >> nth=0", "profile:Country")
        page.fill("input[name=filter_value] >> nth=0", "US, DE")
        with page.expect_navigation():
            page.click("text=Show chart")

        page.wait_for_function("window.segmentationChart !== undefined")
        chart = page.evaluate(
            """() => {
                const c = Chart.getChart(document.getElementById('chart'));
                return {type: c.config.type, labels: c.data.labels,
                        datasets: c.data.datasets.map(d => [d.label, d.data])};
            }"""
        )
        assert chart["type"] == "bar"
        assert chart["labels"] == ["2024-05-01", "2024-05-02", "2024-05-03"]
        # user-0002 upgraded after its purchases: all its purchases count under "pro"
        assert chart["datasets"] == [["pro", [2, 1, 0]], ["enterprise", [0, 1, 0]]]
        expect(page.locator("#series-table tbody tr")).to_have_count(2)
        canvas = page.locator("#chart").bounding_box()
        assert canvas and canvas["width"] > 600 and canvas["height"] > 200
        page.screenshot(path=str(tmp_path / "segmentation.png"), full_page=True)

        # the same question on the value at event time: user-0002 is still "free" there
        page.select_option("#group_by", "user:plan")
        with page.expect_navigation():
            page.click("text=Show chart")
        page.wait_for_function("window.segmentationChart !== undefined")
        datasets = page.evaluate(
            "() => Chart.getChart(document.getElementById('chart')).data.datasets"
            ".map(d => [d.label, d.data])"
        )
        assert datasets == [["free", [1, 1, 0]], ["enterprise", [0, 1, 0]], ["pro", [1, 0, 0]]]
        assert not failed, f"requests failed (a CDN?): {failed}"
