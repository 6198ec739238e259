"""The check rules are pure: judged here from plain inspections, with no warehouse."""

from __future__ import annotations

from typing import Any

from profilesync.mapping import from_columns
from profilesync.warehouses.delta.rules import CDF, LOG_RETENTION, FeedInspection, judge_feed
from profilesync.warehouses.ducklake.checks import LakeInspection
from profilesync.warehouses.ducklake.checks import judge as judge_lake
from profilesync.warehouses.postgres.catalog import Column, Relation
from profilesync.warehouses.postgres.checks import PostgresInspection
from profilesync.warehouses.postgres.checks import judge as judge_postgres
from profilesync.warehouses.postgres.slot import Slot
from profilesync.warehouses.rules import DAY, retention_check, time_travel_check

HOUR = 3600
MAPPING = from_columns("public.users", "uid", [("title", "Title")])


def test_a_retention_shorter_than_the_frequency_fails_and_under_a_week_warns() -> None:
    def level(seconds: int | None) -> str:
        return retention_check("r", "keep", "x", seconds, 12 * HOUR, "FIX").level

    assert [level(None), level(HOUR), level(DAY), level(8 * DAY)] == [
        "warn",
        "fail",
        "warn",
        "pass",
    ]
    failed = retention_check("r", "keep", "1 hour", HOUR, 12 * HOUR, "FIX", "snapshots")
    assert "snapshots would expire" in failed.message and failed.fix_sql == "FIX"


def test_time_travel_needs_twice_the_frequency() -> None:
    def level(days: int, every: int) -> str:
        return time_travel_check("DAYS = n", "t", days, every, "FIX").level

    assert level(0, HOUR) == "fail"  # Time Travel off
    assert level(1, 12 * HOUR) == "warn"  # allowed, but under a week
    assert level(1, 13 * HOUR) == "fail"  # more than half the retention
    assert level(7, DAY) == "pass"


def test_a_delta_table_without_the_feed_gets_the_sql_to_turn_it_on() -> None:
    off = FeedInspection("s.users", "Delta table s.users at version 3", {}, None)
    [check] = judge_feed(off, DAY)
    assert check.level == "fail" and CDF in (check.fix_sql or "")
    on = FeedInspection("s.users", "", {CDF: "true", LOG_RETENTION: "interval 2 days"}, 1)
    checks = {c.name: c.level for c in judge_feed(on, DAY)}
    assert checks == {
        "change data feed": "pass",
        LOG_RETENTION: "warn",
        "delta.deletedFileRetentionDuration": "pass",
    }


def test_a_ducklake_view_fails_cdc_and_passes_diff() -> None:
    view = LakeInspection(from_columns("main.v", "uid", [("title", "Title")]), is_view=True)
    assert judge_lake(view, DAY, "cdc")[0].level == "fail"
    assert judge_lake(view, DAY, "diff")[0].level == "pass"


def server(**overrides: Any) -> dict[str, Any]:
    return {
        "user": "app",
        "superuser": False,
        "replication": True,
        "wal_level": "logical",
        "version": 160000,
        "version_text": "16.0",
        "max_slots": 10,
        "slots_used": 10,
        "keep_size": "-1",
        "can_select": True,
        "can_use_schema": True,
        **overrides,
    }


def postgres(**overrides: Any) -> PostgresInspection:
    relation = Relation(
        42, "public", "users", "r", (Column("uid", "text"), Column("title", "text"))
    )
    values: dict[str, Any] = {
        "mapping": MAPPING,
        "relation": relation,
        "server": server(),
        "slot": Slot("profilesync_users", "users"),
        "replication_refused": "",
        "plugin": ("loads", ""),
        "identity": ("d", ["uid"]),
        **overrides,
    }
    return PostgresInspection(**values)


def test_postgres_rules_name_the_fix_without_a_server() -> None:
    checks = {c.name: c for c in judge_postgres(postgres(), 12 * HOUR, "cdc")}
    assert checks["replication slot"].level == "fail"  # every slot of the server is in use
    assert "max_replication_slots = 20" in (checks["replication slot"].fix_sql or "")
    assert checks["wal2json"].level == "pass"
    logical = judge_postgres(postgres(server=server(wal_level="replica")), HOUR, "cdc")
    assert {c.name: c.level for c in logical}["wal_level"] == "fail"
    diff = judge_postgres(postgres(), HOUR, "diff")
    assert [c.name for c in diff] == ["table", "privileges", "strategy"]


def test_postgres_user_id_outside_the_replica_identity_fails() -> None:
    mapping = from_columns("public.users", "title", [("uid", "Uid")])
    checks = {c.name: c for c in judge_postgres(postgres(mapping=mapping), HOUR, "cdc")}
    assert checks["replica identity"].level == "fail"
    assert "user_id is read from title" in checks["replica identity"].message
