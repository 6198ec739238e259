"""Saving a source edit is all or nothing: a failure partway leaves the source, its mapping
and its stored profile columns as they were (one DuckDB transaction). On ClickHouse, whose
column changes have no transaction, a crash between them and the catalog leaves a resync
mark, and the next ordinary sync puts the profiles back as the saved mapping says.

Failures are injected where ``PROFILESYNC_FAULT`` points: raised in process, and as a
SIGKILL of the real ``profilesync`` process (see tests/test_crash.py).
"""

from __future__ import annotations

import signal
from dataclasses import replace
from typing import Any

import pytest

from profilesync import faults
from profilesync.store import open_store
from profilesync.store.protocol import Store
from tests.conftest import Cli, Warehouse, expected, users_table
from tests.store.conftest import apply, net, profiles

POINTS = ["edit_mid", "edit_before_commit"]


class Injected(Exception):
    pass


def seen(store: Store) -> dict[str, Any]:
    """What a user can observe of the source: its mapping, settings, profiles, columns."""
    source = store.get_source("users")
    return {
        "source": (source.mapping, source.frequency_seconds, source.strategy),
        "profiles": profiles(store),
        "profile": store.get_profile("u-0001", detail=True),
        "columns": next((c for s, c in store.profile_tables() if s.id == source.id), None),
        "stats": {n: s.users for n, s in store.property_stats(source).items()},
        "resync": store.get_setting(f"resync_pending.{source.id}"),
    }


@pytest.mark.parametrize("point", POINTS)
def test_a_failed_save_changes_nothing(
    store: Store, point: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply(store, net({"u-0001": ("a", 1.0), "u-0002": ("b", None)}))
    source = store.get_source("users")
    before = seen(store)
    score = next(p for p in source.mapping.properties if p.name == "Score")
    mapping = replace(source.mapping, properties=(replace(score, name="Points"),))

    def crash(at: str) -> None:
        raise Injected(at)

    monkeypatch.setenv(faults.ENV, point)
    monkeypatch.setattr(faults, "crash", crash)
    with pytest.raises(Injected):
        store.edit_source(
            source,
            mapping,
            drops=["Title"],
            renames=[("Score", "Points")],
            resync=["new property Points"],
            frequency_seconds=60,
        )
    after = seen(store)
    if store.capabilities.dialect == "clickhouse":  # no transaction around column changes
        # the catalog is as it was, with a mark that makes the next sync a resync
        assert after["source"] == before["source"] and before["resync"] is None
        assert after["columns"] == ["Points"]
        assert "new property Points" in str(after["resync"])
    else:
        assert after == before
    assert before["columns"] == ["Title", "Score"]

    monkeypatch.delenv(faults.ENV)  # the same edit, saved
    store.edit_source(source, mapping, drops=["Title"], renames=[("Score", "Points")])
    assert store.get_source("users").mapping.property_names == ["Points"]
    assert profiles(store) == {"u-0001": {"Points": 1.0}, "u-0002": {}}


PROPS = [("title", "Title"), ("score", "Score"), ("active", "Active")]
EDIT = ("source", "edit", "users", "--rename", "Title=Job title", "--remove-property", "Active")


@pytest.mark.parametrize("backend", ["duckdb", "chdb"])
@pytest.mark.parametrize("point", POINTS)
def test_a_killed_save_is_undone_or_healed_by_the_next_sync(
    backend: str, point: str, warehouse: Warehouse, cli: Cli
) -> None:
    if backend == "chdb":
        pytest.importorskip("chdb", reason="needs the clickhouse extra: pip install .[clickhouse]")
    warehouse.create("prod.users", users_table(50))
    cli.ok("--store", backend, "connection", "add", "lake", "--kind", "delta",
           "--path", str(warehouse.root))  # fmt: skip
    properties = [arg for name, label in PROPS for arg in ("--property", f"{name}={label}")]
    cli.ok("source", "add", "users", "--connection", "lake", "--table", "prod.users",
           "--user-id", "uid", *properties)  # fmt: skip
    cli.ok("sync", "users")
    old = expected(warehouse.rows("prod.users"), "uid", PROPS)

    proc = cli(*EDIT, "--yes", env={"PROFILESYNC_FAULT": point})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    shown = cli.json("source", "show", "users")
    assert [p["name"] for p in shown["properties"]] == ["Title", "Score", "Active"]
    healed = cli.json("sync", "users")
    if backend == "duckdb":  # nothing of the edit was saved: an ordinary sync, nothing to do
        assert shown["resync_pending"] is None
        assert (healed["mode"], healed["operations"]) == ("incremental", 0)
    else:  # the columns changed in ClickHouse, the catalog did not: the sync is a resync
        assert shown["resync_pending"] is not None
        assert healed["mode"] == "resync"
    with open_store(cli.home) as store:
        assert profiles(store) == old
    assert cli.json("source", "show", "users")["resync_pending"] is None

    cli.ok(*EDIT, "--yes")  # the edit, done again, is saved whole
    new = [("title", "Job title"), ("score", "Score")]
    with open_store(cli.home) as store:
        assert store.get_source("users").mapping.property_names == ["Job title", "Score"]
        assert profiles(store) == expected(warehouse.rows("prod.users"), "uid", new)
