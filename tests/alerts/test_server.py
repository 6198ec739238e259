"""``/api/alerts`` and the ``/alerts`` page on a real ``serve`` app, with a real receiver;
the page in Debian's Chromium too."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.alerts.conftest import Webhook
from tests.browser import chromium_page
from tests.conftest import Warehouse, users_table
from tests.server.conftest import PASSWORD, Served, serving


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with serving(tmp_path / "home") as s:
        yield s


def test_the_api_adds_lists_tests_and_removes_channels(served: Served, webhook: Webhook) -> None:
    api = served.api
    added = api.post("/api/alerts", json={"name": "hook", "kind": "webhook", "url": webhook.url})
    assert added.status_code == 201
    assert added.json()["events"] == [
        "run_failed", "source_stopped", "quota_80", "quota_100", "recovered",
    ]  # fmt: skip
    assert "secretpart" not in added.text
    again = api.post("/api/alerts", json={"name": "hook", "kind": "webhook", "url": webhook.url})
    assert again.status_code == 422 and "exists already" in again.json()["message"]
    bad = api.post("/api/alerts", json={"name": "m", "kind": "email", "to": "x@example.com"})
    assert bad.status_code == 422 and "SMTP host" in bad.json()["message"]
    assert [c["name"] for c in api.get("/api/alerts").json()] == ["hook"]

    tested = api.post("/api/alerts/hook/test").json()
    assert (tested["status"], tested["answer"], tested["event"]) == ("sent", "HTTP 200: ok", "test")
    assert webhook.events() == ["test"]
    assert api.get("/api/alerts/deliveries").json()[0]["id"] == tested["id"]
    assert api.post("/api/alerts/nope/test").status_code == 404
    assert api.delete("/api/alerts/hook").json() == {"removed": "hook"}
    assert api.get("/api/alerts").json() == []
    assert api.get("/api/alerts", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_a_sync_now_that_fails_alerts_through_the_server(tmp_path: Path, webhook: Webhook) -> None:
    lake = Warehouse(tmp_path / "lake")
    lake.create("prod.users", users_table(3))
    with serving(tmp_path / "home") as served:
        api = served.api
        api.post("/api/alerts", json={"name": "hook", "kind": "webhook", "url": webhook.url})
        api.post(
            "/api/connections",
            json={"name": "lake", "kind": "delta", "config": {"path": str(lake.root)}},
        )
        made = api.post(
            "/api/sources",
            json={
                "name": "users",
                "connection": "lake",
                "table": "prod.users",
                "user_id": "uid",
                "properties": [{"column": "title", "name": "Title"}],
            },
        )
        assert made.status_code in (200, 201), made.text
        assert api.post("/api/sources/users/sync?wait=true").json()["status"] == "success"
        shutil.rmtree(lake.path("prod.users"))
        for _ in range(2):
            assert api.post("/api/sources/users/sync?wait=true").status_code >= 400
        assert webhook.events() == ["run_failed"]
        lake.create("prod.users", users_table(3))
        resynced = api.post("/api/sources/users/sync?wait=true&resync=true")
        assert resynced.json()["status"] == "success"
        assert webhook.events() == ["run_failed", "recovered"]
        shown = served.ui.get("/alerts").text
        assert "Source users recovered" in shown and "Sync of users failed" in shown


def test_the_page_refuses_a_bad_channel_with_the_form_kept(served: Served) -> None:
    page = served.ui.post(
        "/alerts",
        data={"name": "mail", "kind": "email", "to": "ops@example.com", "host": "smtp.example.com",
              "from": "bad address", "password": "never-echoed", "events": ["run_failed"]},
    )  # fmt: skip
    assert page.status_code == 400
    assert "email addresses &#39;bad address&#39; are not valid" in page.text
    assert 'value="smtp.example.com"' in page.text and "never-echoed" not in page.text
    none = served.ui.post("/alerts", data={"name": "h", "url": "https://h.example.com/x"})
    assert none.status_code == 400 and "(none given)" in none.text


@pytest.mark.browser
def test_add_a_webhook_and_test_it_in_the_browser(served: Served, webhook: Webhook) -> None:
    from playwright.sync_api import expect

    webhook.reply = "ok from the receiver"
    page: Any
    with chromium_page(height=900) as page:
        page.goto(f"{served.url}/alerts")
        page.get_by_label("User name").fill("admin")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("heading", name="Alerts", exact=True)).to_be_visible()
        expect(page.get_by_text("No alert channels yet.")).to_be_visible()
        page.get_by_label("Name", exact=True).fill("ops-hook")
        page.get_by_label("URL").fill(webhook.url)
        page.get_by_label("a source recovered").uncheck()
        page.get_by_role("button", name="Add channel").click()
        expect(page.get_by_text("Alert channel added.")).to_be_visible()
        row = page.locator('tr[data-channel="ops-hook"]')
        expect(row).to_contain_text("run_failed, source_stopped, quota_80, quota_100")
        expect(row).not_to_contain_text("recovered")
        expect(row).not_to_contain_text("secretpart")
        row.get_by_role("button", name="Send a test message to ops-hook").click()
        expect(page.locator("#test-result")).to_contain_text("Test to ops-hook: sent")
        expect(page.locator("#test-result")).to_contain_text("HTTP 200: ok from the receiver")
        delivery = page.locator("#deliveries tbody tr").first
        expect(delivery).to_contain_text("Test alert from profilesync to ops-hook")
        expect(delivery).to_contain_text("HTTP 200: ok from the receiver")
    assert webhook.events() == ["test"]


def test_a_slow_receiver_holds_up_no_write_and_its_delivery_is_recorded(
    tmp_path: Path, webhook: Webhook
) -> None:
    webhook.hold = threading.Event()  # answers after 3 s, or once the pause below is done
    lake = Warehouse(tmp_path / "lake")
    lake.create("prod.users", users_table(5))
    lake.create("prod.others", users_table(2, start=30_001))
    with serving(tmp_path / "home") as served:
        api = served.api
        api.post("/api/alerts", json={"name": "slow", "kind": "webhook", "url": webhook.url})
        api.post(
            "/api/connections",
            json={"name": "lake", "kind": "delta", "config": {"path": str(lake.root)}},
        )
        for name, table, title in (
            ("users", "prod.users", "Title"),
            ("others", "prod.others", "Job"),
        ):
            made = api.post(
                "/api/sources",
                json={
                    "name": name,
                    "connection": "lake",
                    "table": table,
                    "user_id": "uid",
                    "properties": [{"column": "title", "name": title}],
                },
            )
            assert made.status_code in (200, 201), made.text
        with served.app.state.store_lock:
            served.app.state.store.set_setting("operations_limit", "6")  # 5 users: 83%
        assert api.post("/api/sources/users/sync").status_code == 202
        assert webhook.received.wait(15)  # quota_80 is at the receiver, not answered yet
        started = time.monotonic()
        paused = api.post("/api/sources/others/pause", timeout=2.5)
        assert paused.status_code == 200 and time.monotonic() - started < 2.5
        assert api.get("/api/alerts/deliveries").json() == []  # still being delivered
        webhook.hold.set()
        deadline = time.monotonic() + 15
        while not (shown := api.get("/api/alerts/deliveries").json()):
            assert time.monotonic() < deadline, "the delivery was not recorded"
            time.sleep(0.05)
        assert [(d["event"], d["status"], d["answer"]) for d in shown] == [
            ("quota_80", "sent", "HTTP 200: ok")
        ]
        assert api.get("/api/sources/others").json()["state"] == "paused"
