"""Alerts from the scheduler on a real store and real Delta tables, to real receivers:
once per change of state, never at every attempt, and never in the way of a sync."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from profilesync.app import alerts, runs, sources
from profilesync.engine.locks import source_lock
from profilesync.errors import QuotaExceededError, TableReplacedError, WarehouseUnavailableError
from profilesync.server.scheduler import RetryPolicy, Scheduler
from profilesync.sources.delta import DeltaSource
from profilesync.store.duckdb import DuckDBStore
from tests.alerts.conftest import Mailbox, Webhook, free_port
from tests.conftest import Warehouse, table_source, users_table
from tests.server.scheduling import (  # noqa: F401 (fixtures)
    HOUR,
    Clock,
    clock_fixture,
    scheduler_fixture,
    users_fixture,
)


def test_a_retried_failure_alerts_once_when_the_retries_are_used_up_and_recovery_once(
    scheduler: Callable[..., Scheduler],
    store: DuckDBStore,
    users: str,
    clock: Clock,
    warehouse: Warehouse,
    webhook: Webhook,
    mailbox: Mailbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    alerts.add_channel(store, "hook", "webhook", {"url": webhook.url})
    mail = {"host": "127.0.0.1", "port": mailbox.port, "security": "none"}
    alerts.add_channel(
        store, "ops", "email", {**mail, "from": "profilesync@example.com", "to": "ops@example.com"}
    )
    s = scheduler(clock, retry=RetryPolicy(attempts=2, first_seconds=60, factor=1))
    assert s.tick() == ["users"]

    def unreachable(self: Any, *args: Any, **kwargs: Any) -> Any:
        # stands in for a warehouse that times out: a Delta directory cannot
        raise WarehouseUnavailableError("the warehouse did not answer (timed out): try again later")

    monkeypatch.setattr(DeltaSource, "changes", unreachable)
    clock.advance(12 * HOUR)
    assert s.tick() == ["users"]  # fails, retry 1
    clock.advance(timedelta(seconds=60))
    assert s.tick() == ["users"]  # fails, retry 2
    assert webhook.bodies == [] and mailbox.messages == []
    clock.advance(timedelta(seconds=60))
    assert s.tick() == ["users"]  # fails, no retry left: now a person hears of it
    assert webhook.events() == ["run_failed"]
    body = webhook.bodies[0]
    assert "Sync of users failed" in body["text"] and "did not answer" in body["text"]
    assert body["blocks"][0]["text"]["text"] == "Sync of users failed"
    fields = body["profilesync"]
    assert fields["source"] == "users" and fields["error_code"] == "warehouse_unavailable"
    assert fields["run_id"] == store.runs("users", 1)[0]["id"]
    assert mailbox.subjects() == ["[profilesync] Sync of users failed"]
    assert "did not answer" in mailbox.messages[0].get_payload()

    # the next regular run fails the same way, retries and all: nothing new is sent
    for step in (12 * HOUR, timedelta(seconds=60), timedelta(seconds=60)):
        clock.advance(step)
        assert s.tick() == ["users"]
    assert webhook.events() == ["run_failed"] and len(mailbox.messages) == 1

    monkeypatch.undo()
    for _ in range(2):  # the first success after it tells of the recovery, the next nothing
        clock.advance(12 * HOUR)
        assert s.tick() == ["users"]
    assert webhook.events() == ["run_failed", "recovered"]
    assert "users* synced successfully again after it had failed" in webhook.bodies[1]["text"]
    assert mailbox.subjects()[-1] == "[profilesync] Source users recovered"
    sent = alerts.deliveries(store)
    assert [(d["channel"], d["event"], d["status"]) for d in sent] == [
        ("ops", "recovered", "sent"),
        ("hook", "recovered", "sent"),
        ("ops", "run_failed", "sent"),
        ("hook", "run_failed", "sent"),
    ]
    assert sent[0]["answer"].startswith("250 ") and sent[1]["answer"] == "HTTP 200: ok"


def test_a_replaced_table_stops_the_source_with_one_alert_and_a_resync_recovers_it(
    scheduler: Callable[..., Scheduler],
    store: DuckDBStore,
    users: str,
    clock: Clock,
    warehouse: Warehouse,
    webhook: Webhook,
) -> None:
    alerts.add_channel(store, "hook", "webhook", {"url": webhook.url}, "source_stopped,recovered")
    s = scheduler(clock)
    assert s.tick() == ["users"]
    shutil.rmtree(warehouse.path("prod.users"))  # dbt full refresh
    warehouse.create("prod.users", users_table(3))
    clock.advance(12 * HOUR)
    assert s.tick() == ["users"]
    assert webhook.events() == ["source_stopped"]
    assert "dropped and re-created" in webhook.bodies[0]["profilesync"]["error"]
    assert webhook.bodies[0]["profilesync"]["error_code"] == "table_replaced"
    # stopped: later checks run nothing and send nothing; a manual retry fails the same way
    clock.advance(24 * HOUR)
    assert s.tick() == []
    with pytest.raises(TableReplacedError, match="dropped and re-created"):
        s.run("users")
    assert webhook.events() == ["source_stopped"]
    result = s.run("users", resync=True)
    assert result is not None and result.status == "success"
    assert webhook.events() == ["source_stopped", "recovered"]


def test_a_missing_table_alerts_run_failed_once_and_recovers_when_it_is_back(
    scheduler: Callable[..., Scheduler],
    store: DuckDBStore,
    users: str,
    clock: Clock,
    warehouse: Warehouse,
    webhook: Webhook,
) -> None:
    alerts.add_channel(store, "hook", "webhook", {"url": webhook.url}, "run_failed,recovered")
    s = scheduler(clock)
    assert s.tick() == ["users"]
    moved = warehouse.root.with_name("moved")
    shutil.move(warehouse.root, moved)  # the connection's directory is gone
    for _ in range(2):
        clock.advance(12 * HOUR)
        assert s.tick() == ["users"]
    assert webhook.events() == ["run_failed"]
    assert "does not exist" in webhook.bodies[0]["profilesync"]["error"]
    shutil.move(moved, warehouse.root)
    clock.advance(12 * HOUR)
    assert s.tick() == ["users"]
    assert webhook.events() == ["run_failed", "recovered"]


def test_a_receiver_that_fails_or_is_gone_is_recorded_and_the_sync_still_succeeds(
    scheduler: Callable[..., Scheduler],
    store: DuckDBStore,
    users: str,
    clock: Clock,
    webhook: Webhook,
) -> None:
    webhook.status, webhook.reply = 500, "internal trouble at the receiver"
    alerts.add_channel(store, "broken", "webhook", {"url": webhook.url})
    alerts.add_channel(store, "gone", "webhook", {"url": f"http://127.0.0.1:{free_port()}/x"})
    store.set_setting("operations_limit", "6")  # 5 users: 83% after the first sync
    s = scheduler(clock)
    assert s.tick() == ["users"]
    assert store.runs("users", 1)[0]["status"] == "success"
    assert store.usage()["used"] == 5
    sent = {d["channel"]: d for d in alerts.deliveries(store)}
    assert sent["broken"]["status"] == "failed" and sent["broken"]["event"] == "quota_80"
    assert sent["broken"]["answer"] == "HTTP 500: internal trouble at the receiver"
    assert sent["gone"]["status"] == "failed"
    assert "refused" in sent["gone"]["answer"].lower()
    assert len(webhook.bodies) == 1


def test_a_sync_refused_by_the_quota_alerts_quota_100_and_the_stop_once(
    scheduler: Callable[..., Scheduler],
    store: DuckDBStore,
    clock: Clock,
    warehouse: Warehouse,
    webhook: Webhook,
) -> None:
    warehouse.create("prod.users", users_table(15))
    table_source(store, "users", "prod.users", "uid", [("title", "Title")])
    store.set_setting("operations_limit", "10")  # the first sync needs 15: refused
    alerts.add_channel(store, "hook", "webhook", {"url": webhook.url})
    s = scheduler(clock)
    assert s.tick() == ["users"]
    assert sorted(webhook.events()) == ["quota_100", "source_stopped"]
    quota = next(b for b in webhook.bodies if b["profilesync"]["event"] == "quota_100")
    fields = quota["profilesync"]
    assert (fields["used"], fields["limit"], fields["threshold"]) == (0, 10, 100)
    assert fields["error_code"] == "quota_exceeded" and "would reach 15" in fields["error"]
    assert "Monthly operations limit reached" in quota["text"] and "refused" in quota["text"]
    with pytest.raises(QuotaExceededError):  # refused again by hand: nothing new is sent
        s.run("users")
    assert len(webhook.bodies) == 2
    assert sorted(d["event"] for d in alerts.deliveries(store)) == ["quota_100", "source_stopped"]


def test_a_source_deleted_while_failing_and_added_again_starts_afresh(
    scheduler: Callable[..., Scheduler],
    store: DuckDBStore,
    users: str,
    clock: Clock,
    warehouse: Warehouse,
    webhook: Webhook,
) -> None:
    alerts.add_channel(store, "hook", "webhook", {"url": webhook.url}, "run_failed,recovered")
    s = scheduler(clock)
    assert s.tick() == ["users"]
    moved = warehouse.root.with_name("moved")
    shutil.move(warehouse.root, moved)
    clock.advance(12 * HOUR)
    assert s.tick() == ["users"]
    assert webhook.events() == ["run_failed"]
    shutil.move(moved, warehouse.root)
    sources.delete_source(store, "users")
    s.forget("users")
    table_source(store, "users", "prod.users", "uid", [("title", "Title")])
    clock.advance(12 * HOUR)
    assert s.tick() == ["users"]
    assert store.runs("users", 1)[0]["status"] == "success"
    assert webhook.events() == ["run_failed"]  # not "recovered": this source never failed
    shutil.move(warehouse.root, moved)  # and its own failures alert as before
    clock.advance(12 * HOUR)
    assert s.tick() == ["users"]
    assert webhook.events() == ["run_failed", "run_failed"]


def test_a_manual_sync_releases_the_source_before_a_slow_receiver_answers(
    store: DuckDBStore, users: str, webhook: Webhook
) -> None:
    webhook.hold = threading.Event()  # answers after 3 s, or once released
    alerts.add_channel(store, "slow", "webhook", {"url": webhook.url})
    store.set_setting("operations_limit", "6")  # 5 users: quota_80
    worker = threading.Thread(target=runs.sync_now, args=[store.home, "users"])
    worker.start()
    try:
        assert webhook.received.wait(15)
        with source_lock(store.home, "users"):  # free: another sync could start now
            pass
    finally:
        webhook.hold.set()
        worker.join(15)
    assert [(d["event"], d["status"]) for d in alerts.deliveries(store)] == [("quota_80", "sent")]
