"""Runs, rejected rows and usage: the history a person reads after syncs."""

from __future__ import annotations

from typing import Any

from profilesync.model import SyncResult, now
from profilesync.store.protocol import Store
from tests.store.conftest import apply, net


def test_a_run_keeps_its_counts_and_rejected_rows(store: Store) -> None:
    rejected: list[tuple[str, dict[str, Any]]] = [
        ("user_id is NULL", {"uid": None, "title": "x"}),
        ("user_id is too short", {"uid": 7}),
    ]
    result = apply(store, net({"u-0001": ("a", 1.0)}, rejected=rejected))
    assert result.run_id is not None
    run = store.runs("users")[0]
    assert (run["id"], run["status"], run["inserted"], run["rejected"]) == (
        result.run_id,
        "success",
        1,
        2,
    )
    assert run["finished_at"].endswith("Z")
    assert store.rejected_rows(result.run_id) == [
        {"reason": "user_id is NULL", "row": {"uid": None, "title": "x"}},
        {"reason": "user_id is too short", "row": {"uid": 7}},
    ]


def test_a_failed_run_is_history_only(store: Store) -> None:
    apply(store, net({"u-0001": ("a", 1.0)}))
    failed = SyncResult(source="users", started_at=now(), error="boom", error_code="x")
    store.record_failed_run(store.get_source("users"), failed)
    runs = store.runs("users")
    assert [r["status"] for r in runs] == ["failed", "success"]
    assert runs[0]["id"] > runs[1]["id"]
    assert (runs[0]["inserted"], runs[0]["error"]) == (0, "boom")
    assert store.usage()["used"] == 1


def test_usage_counts_operations_by_source_and_day(store: Store) -> None:
    apply(store, net({"u-0001": ("a", 1.0), "u-0002": ("b", 2.0)}))
    apply(store, net({"u-0001": ("a", 9.0)}, deleted=["u-0002"]), position="2")
    usage = store.usage()
    assert (usage["used"], usage["remaining"]) == (4, usage["limit"] - 4)
    assert usage["sources"] == [{"source": "users", "operations": 4}]
    today = now().date().isoformat()
    assert store.usage_by_day_and_source() == [{"day": today, "source": "users", "operations": 4}]


def test_settings_and_the_plan(store: Store) -> None:
    store.set_setting("plan", "enterprise")
    assert store.quota().plan == "enterprise"
    store.set_setting("plan", None)
    assert store.get_setting("plan") is None


def test_everything_outlives_the_store_object(store: Store, open_home) -> None:  # type: ignore[no-untyped-def]
    apply(store, net({"u-0001": ("a", 1.0)}))
    store.close()
    with open_home() as reopened:
        assert reopened.get_source("users").checkpoint is not None
        assert reopened.get_profile("u-0001")["properties"] == {"Title": "a", "Score": 1.0}
        assert reopened.usage()["used"] == 1
