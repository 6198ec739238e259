"""The source use cases the CLI, the REST API and the UI all call, on a real store and Delta table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from profilesync.app import connections, runs, sources
from profilesync.errors import ConfigurationError, ProfilesyncError
from profilesync.model import DEFAULT_FREQUENCY_SECONDS, Source
from profilesync.store.duckdb import DuckDBStore
from tests.conftest import Warehouse, users_table


def spec(name: str = "users", **changes: Any) -> sources.SourceSpec:
    base: dict[str, Any] = {
        "connection": "lake",
        "name": name,
        "table": "prod.users",
        "user_id": "uid",
        "properties": [("title", "Title")],
    }
    return sources.SourceSpec(**{**base, **changes})


@pytest.fixture
def lake(warehouse: Warehouse) -> Warehouse:
    warehouse.create("prod.users", users_table())
    return warehouse


def test_add_checks_saves_and_one_json_shape(store: DuckDBStore, lake: Warehouse) -> None:
    saved, checks = sources.add_source(store, spec())
    assert saved.name == "users" and checks and all(c.level != "fail" for c in checks)
    doc = sources.source_doc(store, saved)
    assert doc["frequency_seconds"] == DEFAULT_FREQUENCY_SECONDS
    assert doc["frequency"] == sources.DEFAULT_FREQUENCY == "12h"
    assert doc["kind"] == "delta" and doc["table"] == "prod.users" and doc["last_run"] is None
    assert [(p["name"], p["column"]) for p in doc["properties"]] == [("Title", "title")]
    runs.sync_source(store, "users")
    assert sources.source_doc(store, store.get_source("users"))["last_run"]["status"] == "success"


def test_default_frequency_is_the_model_constant() -> None:
    assert sources.SourceSpec(connection="lake").frequency_seconds == DEFAULT_FREQUENCY_SECONDS
    assert Source("s", "lake", None).frequency_seconds == DEFAULT_FREQUENCY_SECONDS  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", "a b", "x" * 200, "../etc"])
def test_one_name_rule_for_sources_and_connections(
    store: DuckDBStore, lake: Warehouse, tmp_path: Path, name: str
) -> None:
    with pytest.raises(ConfigurationError):
        sources.add_source(store, spec(name))
    with pytest.raises(ConfigurationError):
        connections.add_connection(store, name, "delta", {"path": str(lake.root)})
    assert store.list_sources() == [] and [c.name for c in store.list_connections()] == ["lake"]


def test_failed_checks_refuse_unless_no_check(store: DuckDBStore, warehouse: Warehouse) -> None:
    warehouse.create("prod.users", users_table(), cdf=False)
    with pytest.raises(sources.ChecksFailedError) as refused:
        sources.add_source(store, spec())
    assert refused.value.failures and "not saved" in str(refused.value)
    assert store.list_sources() == []
    saved, checks = sources.add_source(store, spec(), no_check=True)
    assert checks == [] and store.get_source("users").id == saved.id


def test_delete_needs_force_when_the_warehouse_is_gone(
    store: DuckDBStore, lake: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    sources.add_source(store, spec())
    runs.sync_source(store, "users")

    def unreachable(*_: Any) -> None:
        raise ProfilesyncError("warehouse is down")

    from profilesync.warehouses.delta.warehouse import DeltaWarehouse

    monkeypatch.setattr(DeltaWarehouse, "release", unreachable)
    with pytest.raises(sources.NotReleasedError, match=r"not deleted.*with --force"):
        sources.delete_source(store, "users", force_hint="with --force")
    assert store.get_source("users")
    warning = sources.delete_source(store, "users", force=True)
    assert warning == "warehouse is down" and store.list_sources() == []


def test_connection_add_checks_reachability_unless_no_check(
    store: DuckDBStore, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigurationError, match=r"holds no Delta table.*not saved"):
        connections.add_connection(store, "other", "delta", {"path": str(empty)})
    assert not store.has_connection("other")
    _, unchecked = connections.add_connection(
        store, "third", "delta", {"path": str(empty)}, no_check=True
    )
    assert unchecked is None
    with pytest.raises(ConfigurationError, match="exists already"):
        connections.add_connection(store, "third", "delta", {"path": str(empty)})
