"""A connection's page and its forms without JavaScript: Test, Edit (tried before saving,
secrets kept when left blank, "Save anyway" beside the error), Delete behind a confirmation;
and the wizard's connection and table steps."""

from __future__ import annotations

import html
import re
import socket
from pathlib import Path

import httpx

from tests.conftest import Warehouse, users_table
from tests.server.conftest import Served
from tests.server.test_pages import error_of, form, post


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def text(page: httpx.Response) -> str:
    """The page's visible words, one space apart."""
    body = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", page.text, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())


def lake_with_tables(tmp_path: Path) -> Warehouse:
    lake = Warehouse(tmp_path / "lake")
    lake.create("prod.users", users_table(2))
    lake.create("prod.plain", users_table(2), cdf=False)
    return lake


def test_connection_page_test_edit_and_delete(tmp_path: Path, served: Served) -> None:
    lake = lake_with_tables(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    ui = served.ui
    served.api.post(
        "/api/connections",
        json={"name": "lake", "kind": "delta", "config": {"path": str(lake.root)}},
    )
    overview = ui.get("/")
    assert 'href="/connections/lake"' in overview.text

    page = ui.get("/connections/lake")
    assert page.status_code == 200
    assert "Delta Lake (delta)" in text(page) and str(lake.root) in page.text
    assert "No source uses it yet." in text(page)

    tested = ui.post("/connections/lake/test")
    assert "Test passed connected: 2 tables (prod.plain, prod.users)" in text(tested)

    edit = ui.get("/connections/lake/edit")
    assert f'value="{lake.root}"' in edit.text
    refused = ui.post("/connections/lake/edit", data={"cfg_path": str(empty), "action": "save"})
    assert refused.status_code == 422
    assert "holds no Delta table" in error_of_flash(refused, "err-form")
    assert "press Save anyway" in error_of_flash(refused, "err-form")
    assert 'value="save_anyway"' in refused.text and f'value="{empty}"' in refused.text
    assert served.api.get("/api/connections/lake").json()["config"]["path"] == str(lake.root)

    anyway = ui.post(
        "/connections/lake/edit", data={"cfg_path": str(empty), "action": "save_anyway"}
    )
    assert anyway.status_code == 303
    shown = ui.get(anyway.headers["location"])
    assert "Connection saved without trying it" in text(shown) and str(empty) in shown.text
    failed = ui.post("/connections/lake/test")
    assert "Test failed" in text(failed) and "holds no Delta table" in text(failed)

    fixed = ui.post("/connections/lake/edit", data={"cfg_path": str(lake.root)})
    assert fixed.status_code == 303
    assert "it connected with the new settings" in text(ui.get(fixed.headers["location"]))

    confirm = ui.get("/connections/lake/delete")
    assert "Delete connection lake?" in text(confirm)
    assert served.api.get("/api/connections/lake").status_code == 200  # asking deletes nothing
    deleted = ui.post("/connections/lake/delete")
    assert deleted.status_code == 303
    assert served.api.get("/api/connections/lake").status_code == 404


def test_edit_form_keeps_a_blank_secret_and_never_shows_it(served: Served) -> None:
    dsn = f"host=127.0.0.1 port={closed_port()} dbname=app user=app connect_timeout=3"
    secret = "Kept-Secret-9"
    served.api.post(
        "/api/connections",
        json={
            "name": "pg",
            "kind": "postgres",
            "config": {"dsn": dsn, "password": secret},
            "save_anyway": True,
        },
    )
    ui = served.ui
    page = ui.get("/connections/pg")
    assert "set (never shown)" in text(page) and secret not in page.text
    edit = ui.get("/connections/pg/edit")
    assert secret not in edit.text
    assert "leave one blank to keep its stored value" in text(edit)
    assert "A value is stored: blank keeps it." in text(edit)

    other = dsn.replace("app user", "crm user")
    refused = ui.post("/connections/pg/edit", data={"cfg_dsn": other, "cfg_password": ""})
    assert refused.status_code == 422 and "Connection refused" in error_of_flash(
        refused, "err-form"
    )
    assert secret not in refused.text
    saved = ui.post(
        "/connections/pg/edit",
        data={"cfg_dsn": other, "cfg_password": "", "action": "save_anyway"},
    )
    assert saved.status_code == 303
    with served.app.state.store_lock:
        stored = served.app.state.store.get_connection("pg").config
    assert stored == {"dsn": other, "password": secret}
    removed = ui.post(
        "/connections/pg/edit",
        data={"cfg_dsn": other, "unset": "password", "action": "save_anyway"},
    )
    assert removed.status_code == 303
    assert "not set" in text(ui.get("/connections/pg"))


def test_wizard_refuses_a_connection_that_fails_and_offers_save_anyway(
    tmp_path: Path, served: Served
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    ui = served.ui
    fields = {"step": "connection", "kind": "delta", "conn_name": "lake", "cfg_path": str(empty)}
    refused = ui.post("/sources/new", data={**fields, "action": "create"})
    assert refused.status_code == 422
    assert "holds no Delta table" in error_of_flash(refused)
    assert 'name="action" value="save_anyway"' in refused.text
    assert f'value="{empty}"' in refused.text  # the form keeps what was typed
    assert served.api.get("/api/connections").json() == []

    port = closed_port()
    dsn = f"host=127.0.0.1 port={port} dbname=app user=app connect_timeout=3"
    fields = {"step": "connection", "kind": "postgres", "conn_name": "pg", "cfg_dsn": dsn}
    down = ui.post("/sources/new", data={**fields, "action": "create"})
    assert f"port {port} failed: Connection refused" in error_of_flash(down)
    saved = ui.post("/sources/new", data={**fields, "action": "save_anyway"})
    assert [c["name"] for c in served.api.get("/api/connections").json()] == ["pg"]
    # the table step says the warehouse's answer, not also "no tables yet"
    assert "Connection refused" in error_of_flash(saved, "err-form")
    assert "no tables yet" not in saved.text
    assert 'href="/connections/pg"' in saved.text

    # reusing it fails at the connection step, beside the list, with a way to edit it
    reuse = ui.post(
        "/sources/new", data={"step": "connection", "action": "reuse", "connection": "pg"}
    )
    assert reuse.status_code == 422
    assert "Connection refused" in error_of(reuse, "connection")
    assert 'href="/connections/pg/edit"' in reuse.text


def error_of_flash(page: httpx.Response, id_: str = "err-save_anyway") -> str:
    match = re.search(
        rf'<div class="flash fail" role="alert" id="{id_}">(.*?)</div>', page.text, re.S
    )
    assert match, f"no {id_} on the page"
    return html.unescape(match.group(1))


def test_reuse_list_offers_only_connections_of_the_tile_kind(
    tmp_path: Path, served: Served
) -> None:
    lake = lake_with_tables(tmp_path)
    served.api.post(
        "/api/connections",
        json={"name": "lake", "kind": "delta", "config": {"path": str(lake.root)}},
    )
    reuse = 'name="connection" value="lake"'
    assert reuse in served.ui.get("/sources/new").text
    assert reuse in served.ui.get("/sources/new?kind=delta").text
    snowflake = served.ui.get("/sources/new?kind=snowflake")
    assert snowflake.status_code == 200 and reuse not in snowflake.text
    assert "Reuse a connection" not in snowflake.text


def test_table_hints_and_diff_preselected_without_a_change_data_feed(
    tmp_path: Path, served: Served
) -> None:
    lake = lake_with_tables(tmp_path)
    ui = served.ui
    served.api.post(
        "/api/connections",
        json={"name": "lake", "kind": "delta", "config": {"path": str(lake.root)}},
    )
    tables = ui.get("/sources/new?connection=lake")
    hints = dict(re.findall(r'data-hint="([^"]+)">([^<]+)<', tables.text))
    assert hints == {
        "prod.plain": "change data feed off: snapshot diff only",
        "prod.users": "change data feed on",
    }
    for table, chosen in (("prod.plain", "diff"), ("prod.users", "cdc")):
        # as after going back from a draft that chose diff: the new table's choice is made again
        mapping = post(ui, form(tables, "table"), mode="table", table=table, strategy="diff")
        data = post(ui, form(mapping, "mapping"), user_id="uid")
        assert re.search(rf'<option value="{chosen}" selected', data.text), table
        if chosen == "diff":
            assert "Pre-selected: prod.plain has no change data feed" in text(data)
