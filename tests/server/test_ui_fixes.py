"""The web UI speaks UI: errors show their cause and the UI's fix (never a command-line
flag or command), and the small things a person stumbles on read as they should."""

from __future__ import annotations

import html
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from profilesync.engine.quota import Quota
from profilesync.errors import ProfilesyncError, ui_view
from profilesync.model import SyncResult
from profilesync.server.deps import templates
from profilesync.warehouses.delta.rules import RETENTION_REMEDY
from profilesync.warehouses.delta.spec import SPEC as DELTA_SPEC
from profilesync.warehouses.rules import expired_error
from tests.conftest import Warehouse
from tests.server.conftest import Served, people
from tests.server.test_pages import error_of, form, post

#: what the command line would say: a flag or a profilesync command
CLI_TEXT = re.compile(r"(?<![\w-])--[a-z]|profilesync (sync|source|connection|config|events)\b")


def shown(page: httpx.Response | str) -> str:
    """The text a person reads in the page's main part (tags, scripts and styles removed)."""
    text = page if isinstance(page, str) else page.text
    main = text[text.index("<main") : text.index("</main>")]
    main = re.sub(r"<(script|style)\b.*?</\1>", " ", main, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", main)).split())


def speaks_ui(page: httpx.Response | str, fix: str) -> str:
    text = shown(page)
    assert not CLI_TEXT.search(text), f"command-line advice on a page: {text}"
    assert fix in text, f"no {fix!r} on the page: {text}"
    return text


def add_source(served: Served, lake: Warehouse, name: str, table: str) -> None:
    api = served.api
    if api.get("/api/connections/lake").status_code == 404:
        config = {"path": str(lake.root)}
        api.post("/api/connections", json={"name": "lake", "kind": "delta", "config": config})
    body = {
        "name": name,
        "connection": "lake",
        "table": table,
        "user_id": "uid",
        "properties": [{"column": "title", "name": f"{name} title"}],
    }
    assert api.post("/api/sources", json=body).status_code == 201


def record_failure(served: Served, name: str, error: ProfilesyncError) -> None:
    """A failed run as the sync engine records one (its message and code)."""
    with served.app.state.store_lock:
        store = served.app.state.store
        result = SyncResult(source=name, error=str(error), error_code=error.code)
        result.started_at = datetime.now(UTC)
        store.record_failed_run(store.get_source(name), result)


def test_errors_on_pages_show_the_ui_fix_never_a_command(tmp_path: Path, served: Served) -> None:
    lake = Warehouse(tmp_path / "lake")
    for table in ("prod.tiers", "prod.plans", "prod.old", "prod.big"):
        lake.create(table, people([10001, 10002], ["Analyst", "Engineer"]))
    for name in ("tiers", "plans", "old", "big"):
        add_source(served, lake, name, f"prod.{name}")
        assert served.api.post(f"/api/sources/{name}/sync?wait=true").status_code == 200

    # table replaced (real): the scheduler stops the source until someone acts
    shutil.rmtree(lake.path("prod.tiers"))
    lake.create("prod.tiers", people([10001], ["Analyst"]))
    replaced = served.api.post("/api/sources/tiers/sync?wait=true")
    assert replaced.status_code == 409
    for page in (served.ui.get("/sources/tiers"), served.ui.get("/")):
        speaks_ui(page, "was dropped and re-created")
    source_page = speaks_ui(served.ui.get("/sources/tiers"), "What to do: Resync")
    assert "CDC needs incremental models." in source_page
    assert 'href="/sources/tiers#resync"' in served.ui.get("/sources/tiers").text
    assert 'id="resync"' in served.ui.get("/sources/tiers").text  # where the link lands

    # change tracking switched off (real)
    lake.dt("prod.plans").alter.set_table_properties({"delta.enableChangeDataFeed": "false"})
    lake.update("prod.plans", "uid = 10001", {"title": "'Lead'"})
    assert served.api.post("/api/sources/plans/sync?wait=true").status_code == 422
    run_id = served.api.get("/api/sources/plans/runs").json()[0]["id"]
    page = speaks_ui(served.ui.get(f"/sources/plans/runs/{run_id}"), "Turn change tracking on")
    assert "ALTER TABLE" in page  # the SQL to run in the warehouse stays

    # retention exceeded and quota exceeded, as the engine records them
    record_failure(
        served,
        "old",
        expired_error(
            "prod.old", "after version 0", "the log was cleaned up", RETENTION_REMEDY, "old"
        ),
    )
    with pytest.raises(ProfilesyncError) as quota:
        Quota.for_plan("growth", 10).check(8, 5)
    record_failure(served, "big", quota.value)
    speaks_ui(served.ui.get("/sources/old"), "What to do: Resync")
    big = speaks_ui(served.ui.get("/sources/big"), "See this month's usage")
    assert "Wait for next month" in big and 'href="/usage"' in served.ui.get("/sources/big").text


def test_wizard_errors_speak_ui(tmp_path: Path, served: Served) -> None:
    lake = Warehouse(tmp_path / "lake")
    lake.create("prod.users", people([10001, 10002], ["Analyst", "Engineer"]))
    add_source(served, lake, "crm", "prod.users")
    # a property display name another source has: the mapping step's error
    page = served.ui.get("/sources/new?connection=lake")
    mapping = post(served.ui, form(page, "table"), step="table", table="prod.users")
    clash = post(
        served.ui,
        form(mapping, "mapping"),
        step="mapping",
        user_id="uid",
        prop_column="title",
        prop_name="crm title",
    )
    assert clash.status_code == 422
    text = speaks_ui(clash, "another display name in the column mapping")
    assert "taken already: 'crm title'" in error_of(clash, "prop_name_0").replace("&#39;", "'")
    assert "taken already" in text

    # Test mapping of a table without the change data feed: the fix SQL, no CLI flag
    lake.create("prod.nocdf", people([10001], ["Analyst"]), cdf=False)
    mapping = post(served.ui, form(page, "table"), step="table", table="prod.nocdf")
    data = post(
        served.ui, form(mapping, "mapping"), step="mapping", user_id="uid", prop_column="title"
    )
    test = post(served.ui, form(data, "data"), step="data", strategy="cdc")
    text = speaks_ui(test, "delta.enableChangeDataFeed is not enabled on prod.nocdf")
    assert "SET TBLPROPERTIES (delta.enableChangeDataFeed = true)" in text


def test_connection_missing_path_speaks_ui(served: Served) -> None:
    answer = served.api.post("/api/connections", json={"name": "x", "kind": "delta", "config": {}})
    assert answer.status_code == 422
    body = answer.json()
    assert "--path" in body["message"]  # the API's message is unchanged
    assert (
        body["fix"]["ui"]["label"] == "Fill in “Directory of Delta tables” on the connection form"
    )
    with pytest.raises(ProfilesyncError) as missing:
        DELTA_SPEC.check({})
    # the error page as it shows any error that reaches it
    page = templates.get_template("error.html").render(
        {"request": None, "user": None, "title": "Cannot do that", **ui_view(missing.value)}
    )
    speaks_ui(page, "Fill in “Directory of Delta tables” on the connection form")


def test_api_errors_carry_both_fixes(tmp_path: Path, served: Served) -> None:
    lake = Warehouse(tmp_path / "lake")
    lake.create("prod.users", people([10001, 10002], ["Analyst", "Engineer"]))
    add_source(served, lake, "users", "prod.users")
    assert served.api.post("/api/sources/users/sync?wait=true").status_code == 200
    shutil.rmtree(lake.path("prod.users"))
    lake.create("prod.users", people([10001], ["Analyst"]))
    answer = served.api.post("/api/sources/users/sync?wait=true")
    body = answer.json()
    assert answer.status_code == 409 and body["code"] == "table_replaced"
    assert "run `profilesync sync users --resync` to diff the new table" in body["message"]
    assert body["fix"] == {
        "cli": "profilesync sync users --resync",
        "ui": {"label": "Resync", "href": "/sources/users#resync"},
    }
    missing = served.api.get("/api/sources/nope").json()
    assert missing["code"] == "not_found" and set(missing) == {"code", "message", "fix"}


def test_not_found_page_is_titled_for_people(served: Served) -> None:
    page = served.ui.get("/sources/nope")
    assert page.status_code == 404
    text = shown(page)
    assert text.startswith("Not found") and "not_found" not in text
    assert "nope" in text and '<a href="/">Back to the sources</a>' in page.text
    nowhere = served.ui.get("/no/such/page")
    assert nowhere.status_code == 404 and "Not found There is no page at /no/such/page." in shown(
        nowhere
    )


def test_blank_user_id_choice_stays_blank_beside_its_error(tmp_path: Path, served: Served) -> None:
    lake = Warehouse(tmp_path / "lake")
    lake.create("prod.users", people([10001, 10002], ["Analyst", "Engineer"]))
    served.api.post(
        "/api/connections",
        json={"name": "lake", "kind": "delta", "config": {"path": str(lake.root)}},
    )
    page = served.ui.get("/sources/new?connection=lake")
    mapping = post(served.ui, form(page, "table"), step="table", table="prod.users")
    assert '<option value="uid" selected>' in mapping.text  # guessed at first
    blank = post(served.ui, form(mapping, "mapping"), step="mapping", user_id="")
    assert blank.status_code == 422
    assert "Choose the column that holds the user id." in error_of(blank, "user_id")
    select = re.search(r'<select id="user_id".*?</select>', blank.text, re.S)
    assert select and " selected" not in select.group(0)  # the blank shows, as the error says


def test_rotate_key_asks_first(served: Served) -> None:
    created = served.ui.post("/projects", data={"name": "web"})
    assert created.status_code == 303
    listing = served.ui.get("/projects")
    assert 'href="/projects/web/rotate"' in listing.text  # a link to ask, not a form that acts
    assert 'action="/projects/web/rotate"' not in listing.text
    hint = served.api.get("/api/projects").json()[0]["api_key_hint"]
    confirm = served.ui.get("/projects/web/rotate")
    assert confirm.status_code == 200
    text = shown(confirm)
    assert "Rotate the API key of web?" in text and "stops working at once" in text
    assert (
        served.api.get("/api/projects").json()[0]["api_key_hint"] == hint
    )  # asking rotates nothing
    rotated = served.ui.post("/projects/web/rotate")
    assert rotated.status_code == 303
    assert served.api.get("/api/projects").json()[0]["api_key_hint"] != hint


def test_source_page_reads_like_a_page(tmp_path: Path, served: Served) -> None:
    lake = Warehouse(tmp_path / "lake")
    lake.create("prod.users", people([10001, 10002], ["Analyst", "Engineer"]))
    add_source(served, lake, "users", "prod.users")
    # never run yet: its first run is due now, not "0 s ago"
    before = shown(served.ui.get("/sources/users"))
    assert "Next run due now" in before and "s ago" not in before.split("Next run")[1][:40]
    assert served.api.post("/api/sources/users/sync?wait=true").status_code == 200
    page = served.ui.get("/sources/users")
    text = shown(page)
    assert "Checkpoint version 0 of the Delta table" in text
    assert 'title="position 0"' in page.text  # the raw value is still there
    profile = shown(served.ui.get("/profiles", params={"user_id": "10001"}))
    assert "users title Analyst" in profile and '"Analyst"' not in profile


def test_overdue_next_run_says_so() -> None:
    next_run = templates.env.filters["next_run"]
    overdue = next_run(datetime.now(UTC) - timedelta(minutes=5))
    assert overdue.startswith("overdue since ") and overdue.endswith("(5 min ago)")
    assert next_run(datetime.now(UTC)) == "due now"
    assert next_run(datetime.now(UTC) + timedelta(hours=2, seconds=30)).endswith("(in 2 h)")


@pytest.mark.parametrize(
    ("kind", "position", "words"),
    [
        ("delta", "12", "version 12 of the Delta table"),
        ("postgres", "0/16B3748", "LSN 0/16B3748"),
        ("duckdb", "2026-11-29T10:00:00+00:00", "snapshot of 2026-11-29 10:00 UTC"),
        ("ducklake", "5", "snapshot 5 of the DuckLake catalog"),
        ("snowflake", "2026-11-29T10:00:00+00:00", "changes up to 2026-11-29 10:00 UTC"),
    ],
)
def test_checkpoints_in_words(kind: str, position: str, words: str) -> None:
    assert templates.env.filters["checkpoint"](position, kind) == words


def _frequency_options(page: httpx.Response) -> dict[str, bool]:
    select = re.search(r'<select id="frequency".*?</select>', page.text, re.S)
    assert select
    return {
        value: " disabled" in rest
        for value, rest in re.findall(r'<option value="([^"]+)"([^>]*)>', select.group(0))
    }


def test_source_page_disables_frequencies_the_retention_cannot_cover(
    tmp_path: Path, served: Served
) -> None:
    lake = Warehouse(tmp_path / "lake")
    lake.create(
        "prod.users",
        people([10001, 10002], ["Analyst", "Engineer"]),
        **{"delta.logRetentionDuration": "interval 1 day"},
    )
    add_source(served, lake, "users", "prod.users")
    options = _frequency_options(served.ui.get("/sources/users"))
    # retention at least as long as the frequency is enough: exactly 1 day allows every day
    assert options == {
        "15m": False,
        "30m": False,
        "1h": False,
        "3h": False,
        "6h": False,
        "12h": False,
        "1d": False,
        "7d": True,
    }
    assert "changes would expire before they are read" in shown(served.ui.get("/sources/users"))
    refused = served.ui.post("/sources/users/frequency", data={"frequency": "7d"})
    assert "longer than the table's change retention" in shown(refused)
    assert served.api.get("/api/sources/users").json()["frequency"] == "12h"


def test_values_show_without_json_quotes() -> None:
    value = templates.env.filters["value"]
    assert [value(v) for v in ("Analyst", 42, 0.5, True, None, [1, "a"])] == [
        "Analyst",
        "42",
        "0.5",
        "true",
        "null",
        '[1, "a"]',
    ]
