"""Editing a saved source on a real store and Delta table: the plan says what happens to the
profiles, and the next syncs do exactly that, metering only what really changes."""

from __future__ import annotations

import subprocess

import pyarrow as pa
import pytest

from profilesync.app import edit, runs, sources
from profilesync.app.edit import SourceChanges
from profilesync.errors import ConfigurationError, NotFoundError
from profilesync.store.duckdb import DuckDBStore
from tests.conftest import Cli, Warehouse, entry_point, profiles, users_table


def people() -> pa.Table:
    return pa.table(
        {
            "uid": pa.array([10001, 10002, 10003], pa.int64()),
            "email": ["ann@example.com", "bob@example.com", "cy@example.com"],
            "title": ["Analyst", "Engineer", None],
            "seniority": ["junior", None, "senior"],
        }
    )


@pytest.fixture
def synced(store: DuckDBStore, warehouse: Warehouse) -> DuckDBStore:
    """Source ``users`` maps title and seniority, synced once."""
    warehouse.create("prod.users", people())
    spec = sources.SourceSpec(
        connection="lake",
        name="users",
        table="prod.users",
        user_id="uid",
        properties=[("seniority", "Seniority")],
    )
    sources.add_source(store, spec)
    runs.sync_source(store, "users")
    return store


def used(store: DuckDBStore) -> int:
    return int(store.usage()["used"])


def test_a_new_property_is_back_filled_by_the_next_sync_and_metered_per_changed_profile(
    synced: DuckDBStore,
) -> None:
    changes = SourceChanges(add=[("title", "Title")])
    plan = edit.plan_edit(synced, "users", changes)
    assert plan.ok and plan.lines == [
        "Title (new): back-filled by a resync at the next sync; the resync meters an operation "
        "for each profile whose values change"
    ]
    assert synced.get_source("users").mapping.property_names == [
        "Seniority"
    ]  # a plan saves nothing

    before = used(synced)
    saved, _, warning = edit.apply_edit(synced, "users", changes)
    assert warning is None and saved.mapping.property_names == ["Seniority", "Title"]
    pending = edit.pending_resync(synced, saved)
    assert pending is not None and pending["reasons"] == ["new property Title"]
    assert sources.source_doc(synced, saved)["resync_pending"]["reasons"] == ["new property Title"]

    result = runs.sync_source(synced, "users")  # an ordinary sync: it runs as the resync
    assert result.mode == "resync"
    # two users have a title; the third's row is unchanged: two operations, no more
    assert (result.inserted, result.updated, result.deleted, result.unchanged) == (0, 2, 0, 1)
    assert used(synced) == before + 2
    assert profiles(synced)["10001"] == {"Seniority": "junior", "Title": "Analyst"}
    assert edit.pending_resync(synced, synced.get_source("users")) is None
    assert runs.sync_source(synced, "users").mode == "incremental"


def test_a_removed_property_leaves_every_profile_at_once_without_operations(
    synced: DuckDBStore,
) -> None:
    edit.apply_edit(synced, "users", SourceChanges(add=[("title", "Title")]))
    runs.sync_source(synced, "users")
    before = used(synced)
    plan = edit.plan_edit(synced, "users", SourceChanges(remove=["Seniority"]))
    assert plan.lines == [
        "Seniority: dropped from every profile now (2 have a value; no operations)"
    ]
    assert not plan.resync_reasons
    edit.apply_edit(synced, "users", SourceChanges(remove=["Seniority"]))
    assert profiles(synced) == {
        "10001": {"Title": "Analyst"},
        "10002": {"Title": "Engineer"},
        "10003": {},
    }
    assert edit.pending_resync(synced, synced.get_source("users")) is None
    result = runs.sync_source(synced, "users")
    assert result.mode == "incremental" and result.operations == 0 and used(synced) == before


def test_a_rename_keeps_the_values_in_place(synced: DuckDBStore) -> None:
    before = used(synced)
    plan = edit.plan_edit(synced, "users", SourceChanges(rename=[("Seniority", "Level")]))
    assert plan.lines == ["display name Seniority -> Level: renamed in place (no operations)"]
    saved, _, _ = edit.apply_edit(synced, "users", SourceChanges(rename=[("Seniority", "Level")]))
    assert [(p.name, p.column) for p in saved.mapping.properties] == [("Level", "seniority")]
    assert profiles(synced)["10003"] == {"Level": "senior"}
    assert edit.pending_resync(synced, saved) is None
    assert runs.sync_source(synced, "users").operations == 0 and used(synced) == before
    edit.apply_edit(synced, "users", SourceChanges(add=[("title", "Title")]))
    with pytest.raises(ConfigurationError, match="has a property 'Title' already"):
        edit.plan_edit(synced, "users", SourceChanges(rename=[("Level", "title")]))


def test_a_new_user_id_column_re_keys_every_profile_by_a_full_resync(
    synced: DuckDBStore,
) -> None:
    plan = edit.plan_edit(synced, "users", SourceChanges(user_id="email"))
    assert plan.lines == [
        "user id column uid -> email: every profile of this source is re-keyed by a full "
        "resync (deletes + inserts metered: up to 3 deletes and one insert per user of the table)"
    ]
    edit.apply_edit(synced, "users", SourceChanges(user_id="email"))
    result = runs.sync_source(synced, "users")
    assert (result.mode, result.inserted, result.deleted, result.updated) == ("resync", 3, 3, 0)
    assert sorted(profiles(synced)) == ["ann@example.com", "bob@example.com", "cy@example.com"]


def test_failing_checks_refuse_the_save_and_change_nothing(
    synced: DuckDBStore, warehouse: Warehouse
) -> None:
    warehouse.create("prod.plans", users_table())
    sources.add_source(
        synced,
        sources.SourceSpec(
            connection="lake",
            name="plans",
            table="prod.plans",
            user_id="uid",
            properties=[("title", "Plan")],
        ),
    )
    clash = SourceChanges(add=[("title", "Plan")])
    assert not edit.plan_edit(synced, "users", clash).ok
    with pytest.raises(sources.ChecksFailedError, match="taken already: 'Plan'"):
        edit.apply_edit(synced, "users", clash)
    with pytest.raises(NotFoundError, match="no column"):
        edit.apply_edit(synced, "users", SourceChanges(add=[("nickname", "Nickname")]))
    with pytest.raises(NotFoundError, match="has no property 'Title'"):
        edit.apply_edit(synced, "users", SourceChanges(remove=["Title"]))
    with pytest.raises(sources.ChecksFailedError, match="taken already: 'Plan'"):
        edit.apply_edit(synced, "users", SourceChanges(rename=[("Seniority", "Plan")]))
    saved = synced.get_source("users")
    assert saved.mapping.property_names == ["Seniority"]
    assert edit.pending_resync(synced, saved) is None


def test_a_query_source_is_edited_through_its_query(
    store: DuckDBStore, warehouse: Warehouse
) -> None:
    warehouse.create("prod.users", people())
    query = 'SELECT uid AS "user_id", title AS "Title" FROM prod.users'
    sources.add_source(store, sources.SourceSpec(connection="lake", name="q", query=query))
    runs.sync_source(store, "q")
    changes = SourceChanges(rename=[("Title", "Job title")], add=[("seniority", "Seniority")])
    saved, plan, _ = edit.apply_edit(store, "q", changes)
    assert saved.mapping.property_names == ["Job title", "Seniority"]
    assert "AS `Job title`" in (saved.mapping.query or "") and plan.resync_reasons == [
        "new property Seniority"
    ]
    assert runs.sync_source(store, "q").updated == 2
    assert profiles(store)["10001"] == {"Job title": "Analyst", "Seniority": "junior"}
    with pytest.raises(ConfigurationError, match="change the query instead"):
        edit.plan_edit(store, "q", SourceChanges(user_id="email"))


def test_strategy_and_frequency(synced: DuckDBStore) -> None:
    plan = edit.plan_edit(synced, "users", SourceChanges(strategy="diff", frequency_seconds=3600))
    assert plan.lines == [
        "strategy cdc -> diff: every sync reads the whole table and applies only real "
        "differences; profiles stay as they are now (no operations)",
        "frequency 12h -> 1h: the next scheduled sync follows it (no effect on profiles)",
    ]
    saved, _, _ = edit.apply_edit(synced, "users", SourceChanges(strategy="diff"))
    assert saved.strategy == "diff" and edit.pending_resync(synced, saved) is None
    assert runs.sync_source(synced, "users").mode == "diff"
    _, plan, _ = edit.apply_edit(synced, "users", SourceChanges(strategy="cdc"))
    assert plan.resync_reasons == ["the import strategy became cdc"]
    result = runs.sync_source(synced, "users")
    assert (result.mode, result.operations) == ("resync", 0)
    assert runs.sync_source(synced, "users").mode == "incremental"


def test_an_edit_before_the_first_sync_needs_no_resync(
    store: DuckDBStore, warehouse: Warehouse
) -> None:
    warehouse.create("prod.users", people())
    spec = sources.SourceSpec(connection="lake", name="users", table="prod.users", user_id="uid")
    sources.add_source(store, spec)
    saved, plan, _ = edit.apply_edit(store, "users", SourceChanges(add=[("title", "Title")]))
    assert plan.lines == ["Title (new): filled by the first sync"]
    assert edit.pending_resync(store, saved) is None
    assert runs.sync_source(store, "users").mode == "initial"


def test_the_cli_prints_the_plan_asks_and_saves(cli: Cli, warehouse: Warehouse) -> None:
    warehouse.create("prod.users", people())
    cli.ok("connection", "add", "lake", "--kind", "delta", "--path", str(warehouse.root))
    cli.ok(
        "source",
        "add",
        "users",
        "--connection",
        "lake",
        "--table",
        "prod.users",
        "--user-id",
        "uid",
    )
    cli.ok("sync", "users")

    dry = cli.ok("source", "edit", "users", "--add-property", "title=Title", "--dry-run")
    assert "Title (new): back-filled by a resync at the next sync" in dry.stdout
    assert cli.json("source", "show", "users")["properties"] == []

    refused = subprocess.run(
        [
            *entry_point(),
            "--home",
            str(cli.home),
            "source",
            "edit",
            "users",
            "--add-property",
            "title",
        ],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert refused.returncode == 1
    assert "no terminal to ask: add --yes to save, or --dry-run" in refused.stderr
    assert cli.json("source", "show", "users")["properties"] == []

    saved = cli.ok("source", "edit", "users", "--add-property", "title=Title", "--yes")
    assert "Its next sync is a resync" in saved.stdout
    assert "resync pending" in cli.ok("source", "show", "users").stdout
    run = cli.json("sync", "users")
    assert (run["mode"], run["updated"]) == ("resync", 2)
    assert cli.json("source", "show", "users")["resync_pending"] is None

    renamed = cli.json("source", "edit", "users", "--rename", "Title=Job title", "--yes")
    assert renamed["plan"]["lines"] == [
        "display name Title -> Job title: renamed in place (no operations)"
    ]
    assert cli.json("profile", "get", "10001")["properties"] == {"Job title": "Analyst"}
    bad = cli("source", "edit", "users", "--rename", "Job title")
    assert bad.returncode == 1 and "write OLD=NEW" in bad.stderr


def test_a_second_edit_before_the_resync_keeps_the_first_ones_reasons(
    synced: DuckDBStore,
) -> None:
    edit.apply_edit(synced, "users", SourceChanges(add=[("title", "Title")]))
    saved, _, _ = edit.apply_edit(synced, "users", SourceChanges(add=[("email", "Email")]))
    pending = edit.pending_resync(synced, saved)
    assert pending is not None
    assert pending["reasons"] == ["new property Title", "new property Email"]
    result = runs.sync_source(synced, "users")
    assert (result.mode, result.updated) == ("resync", 3)
    assert edit.pending_resync(synced, synced.get_source("users")) is None
