"""In Debian's Chromium: a connection whose server refuses is not saved until "Save anyway";
its page tests it, and an edit of its settings (the stored password kept) makes it work.

Screenshots go to ``test-artifacts/ui/connection-*.png`` at the repository root.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from profilesync.pgserver import PgServer
from tests.browser import chromium_page
from tests.postgres_server import admin, drop_database, fresh_database
from tests.server.conftest import PASSWORD, serving

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"


@pytest.fixture
def browser_page() -> Iterator[Any]:
    with chromium_page(height=800) as page:
        yield page


@pytest.fixture
def database(postgres_server: PgServer) -> Iterator[str]:
    name = fresh_database(postgres_server, "conn")
    with admin(postgres_server, name) as conn:
        conn.execute("CREATE TABLE public.users (uid bigint PRIMARY KEY, title text)")
    yield name
    drop_database(postgres_server, name)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_refused_connection_saved_anyway_then_tested_and_fixed(
    tmp_path: Path, browser_page: Any, postgres_server: PgServer, database: str
) -> None:
    from playwright.sync_api import expect

    page = browser_page
    SHOTS.mkdir(parents=True, exist_ok=True)

    def shot(name: str) -> None:
        page.screenshot(path=str(SHOTS / f"connection-{name}.png"), full_page=True)

    port = closed_port()
    down = f"host=127.0.0.1 port={port} user=app dbname=app connect_timeout=3"
    with serving(tmp_path / "home") as served:
        page.goto(served.url)
        page.get_by_label("User name").fill("admin")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()

        # the wizard tries the connection first: refused, with the cause and "Save anyway"
        page.get_by_role("link", name="+ Add source").first.click()
        page.get_by_role("link", name="PostgreSQL").click()
        page.get_by_label("Connection name").fill("pg")
        page.locator("#cfg_dsn").fill(down)
        page.locator("#cfg_password").fill("Stored-Secret-7")
        page.get_by_role("button", name="Save connection and continue").click()
        error = page.locator("#err-save_anyway")
        expect(error).to_contain_text(f'"127.0.0.1", port {port} failed: Connection refused')
        expect(error).to_contain_text("press Save anyway")
        shot("refused")
        page.locator("#cfg_password").fill("Stored-Secret-7")  # never sent back to the page
        page.get_by_role("button", name="Save anyway").click()
        expect(page.locator("ol.steps [aria-current=step]")).to_have_text("Select table")
        expect(page.locator("#err-form")).to_contain_text("Connection refused")
        expect(page.get_by_text("This connection has no tables yet.")).to_have_count(0)
        shot("saved-anyway")

        # its page: Test says what fails
        page.get_by_role("link", name="Open connection pg").click()
        expect(page.get_by_role("heading", name="Connection pg")).to_be_visible()
        expect(page.locator("[data-setting=password]")).to_have_text("set (never shown)")
        page.get_by_role("button", name="Test").click()
        expect(page.locator("#test-result")).to_contain_text("Test failed")
        expect(page.locator("#test-result")).to_contain_text("Connection refused")
        shot("test-failed")

        # Edit: a blank password keeps the stored one; the new server answers
        page.get_by_role("link", name="Edit the settings").click()
        expect(page.get_by_text("A value is stored: blank keeps it.")).to_be_visible()
        expect(page.locator("#cfg_password")).to_have_value("")
        page.locator("#cfg_dsn").fill(postgres_server.dsn(database))
        shot("edit")
        page.get_by_role("button", name="Test and save").click()
        expect(page.get_by_role("status")).to_contain_text("it connected with the new settings")
        page.get_by_role("button", name="Test").click()
        expect(page.locator("#test-result")).to_contain_text("connected: 1 table (public.users)")
        shot("test-passed")
        with served.app.state.store_lock:
            config = served.app.state.store.get_connection("pg").config
        assert config["password"] == "Stored-Secret-7"
        assert config["dsn"] == postgres_server.dsn(database)
