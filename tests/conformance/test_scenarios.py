"""The DESIGN.md semantics, scenario by scenario, for every warehouse kind that runs here.

Each test changes a real warehouse through its driver, syncs through the library (the
calls the CLI makes) and compares what a user sees: the exported profiles, the run's
counts, the operations metered, the checkpoint and the error raised. The expected
profiles come from the warehouse's own current rows (``expected_profiles``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from profilesync.errors import QuotaExceededError, RetentionExceededError, TableReplacedError
from profilesync.model import SyncResult
from tests.conformance.conftest import (
    Harness,
    Profiles,
    Props,
    expected_profiles,
    net_changes,
)
from tests.conformance.driver import Row

SCHEMA = {
    "uid": "string",
    "plan": "string",
    "seats": "int",
    "score": "float",
    "active": "bool",
    "renewed_at": "timestamp",
}
PROPS: Props = [
    ("plan", "plan"),
    ("seats", "seats"),
    ("score", "Upgrade Propensity Score"),
    ("active", "active"),
    ("renewed_at", "Renewed At"),
]
T0 = datetime(2024, 3, 1, 12, 30, tzinfo=UTC)


def user(
    uid: str,
    plan: str | None = "pro",
    seats: int | None = 1,
    score: float | None = 0.25,
    active: bool | None = True,
    renewed_at: datetime | None = T0,
) -> Row:
    return {
        "uid": uid,
        "plan": plan,
        "seats": seats,
        "score": score,
        "active": active,
        "renewed_at": renewed_at,
    }


def counts(result: SyncResult) -> tuple[int, int, int]:
    """(inserted, updated, deleted) of one run."""
    return result.inserted, result.updated, result.deleted


def expected(h: Harness, table: str = "users", props: Props = PROPS) -> Profiles:
    return expected_profiles(h.driver.rows(table), "uid", props)


def assert_in_sync(h: Harness, table: str = "users", props: Props = PROPS) -> None:
    assert h.profiles() == expected(h, table, props)


@pytest.fixture
def users(harness: Harness) -> Harness:
    """Table ``users`` with three users, a source ``users`` over it, first sync done."""
    harness.driver.create_table(
        "users",
        SCHEMA,
        [user("user-001"), user("user-002", plan="free"), user("user-003", seats=5)],
    )
    harness.add_source("users", "users", user_id="uid", props=PROPS)
    first = harness.sync("users")
    assert (first.mode, *counts(first), first.operations) == ("initial", 3, 0, 0, 3)
    assert_in_sync(harness)
    return harness


# -- the first sync and an idle one --------------------------------------------------------


def test_first_sync_copies_every_row(users: Harness) -> None:
    assert sorted(users.profiles()) == ["user-001", "user-002", "user-003"]
    assert users.profiles()["user-002"]["plan"] == "free"
    assert users.used() == 3
    assert users.checkpoint("users") is not None


def test_sync_without_changes_applies_nothing(users: Harness) -> None:
    before = users.profiles()
    again = users.sync("users")
    assert (counts(again), again.operations, again.status) == ((0, 0, 0), 0, "success")
    assert users.profiles() == before
    assert users.used() == 3


# -- semantics 2 and 3: insert, update, delete, NULL-out -----------------------------------


def test_insert_creates_the_users_row(users: Harness) -> None:
    users.driver.insert("users", [user("user-004", plan="team", seats=9)])
    result = users.sync("users")
    assert counts(result) == (1, 0, 0)
    assert users.profiles()["user-004"]["plan"] == "team"
    assert_in_sync(users)
    assert users.used() == 4


def test_update_replaces_the_values_and_meters_only_the_changed_user(users: Harness) -> None:
    users.driver.update("users", "uid", "user-002", {"plan": "team", "seats": 4})
    result = users.sync("users")
    assert (counts(result), result.operations) == ((0, 1, 0), 1)
    assert users.profiles()["user-002"]["plan"] == "team"
    assert users.profiles()["user-002"]["seats"] == 4
    assert_in_sync(users)


def test_delete_removes_every_property_the_source_gave(users: Harness) -> None:
    users.driver.delete("users", "uid", "user-003")
    result = users.sync("users")
    assert counts(result) == (0, 0, 1)
    assert "user-003" not in users.profiles()
    assert_in_sync(users)


def test_null_out_removes_the_property(users: Harness) -> None:
    users.driver.update("users", "uid", "user-001", {"score": None, "renewed_at": None})
    result = users.sync("users")
    assert counts(result) == (0, 1, 0)
    props = users.profiles()["user-001"]
    assert "Upgrade Propensity Score" not in props and "Renewed At" not in props
    assert props["plan"] == "pro"
    assert_in_sync(users)


def test_all_null_row_gives_an_empty_profile(users: Harness) -> None:
    nothing = {"plan": None, "seats": None, "score": None, "active": None, "renewed_at": None}
    users.driver.update("users", "uid", "user-001", nothing)
    users.driver.insert("users", [user("user-004", None, None, None, None, None)])
    result = users.sync("users")
    assert counts(result) == (1, 1, 0)
    assert users.store.get_profile("user-001") == {"user_id": "user-001", "properties": {}}
    assert users.store.get_profile("user-004") == {"user_id": "user-004", "properties": {}}
    assert_in_sync(users)


def test_a_changed_user_id_moves_the_row(users: Harness) -> None:
    users.driver.update("users", "uid", "user-003", {"uid": "user-030"})
    result = users.sync("users")
    assert counts(result) == (1, 0, 1)
    assert "user-003" not in users.profiles()
    assert users.profiles()["user-030"]["seats"] == 5
    assert_in_sync(users)


# -- semantics 4: net result between two syncs ---------------------------------------------


def test_insert_then_delete_between_syncs_is_nothing(users: Harness) -> None:
    before = users.profiles()
    users.driver.insert("users", [user("user-009")])
    users.driver.delete("users", "uid", "user-009")
    result = users.sync("users")
    assert (counts(result), result.operations) == ((0, 0, 0), 0)
    assert users.profiles() == before
    assert users.used() == 3


def test_several_changes_to_one_user_collapse_to_the_net_result(users: Harness) -> None:
    d = users.driver
    for plan in ("team", "enterprise", "business"):  # three updates: one net update
        d.update("users", "uid", "user-001", {"plan": plan})
    d.insert("users", [user("user-004")])  # insert, then two updates: one net insert
    d.update("users", "uid", "user-004", {"seats": 2})
    d.update("users", "uid", "user-004", {"seats": 3})
    d.update("users", "uid", "user-002", {"plan": "pro"})  # away and back: nothing
    d.update("users", "uid", "user-002", {"plan": "free"})
    d.delete("users", "uid", "user-003")  # deleted and re-inserted as it was: nothing
    d.insert("users", [user("user-003", seats=5)])
    result = users.sync("users")
    assert (counts(result), result.operations) == ((1, 1, 0), 2)
    assert users.profiles()["user-001"]["plan"] == "business"
    assert users.profiles()["user-004"]["seats"] == 3
    assert_in_sync(users)
    assert users.used() == 3 + 2


# -- semantics 1: user_id ------------------------------------------------------------------


def test_integer_user_ids_become_decimal_strings(harness: Harness) -> None:
    schema = {"account_id": "int", "tier": "string"}
    rows = [{"account_id": 12345, "tier": "gold"}, {"account_id": 9876543210, "tier": "silver"}]
    harness.driver.create_table("accounts", schema, rows)
    harness.add_source("accounts", "accounts", user_id="account_id", props=[("tier", "tier")])
    first = harness.sync("accounts")
    assert (counts(first), first.rejected) == ((2, 0, 0), 0)
    assert harness.profiles() == {"12345": {"tier": "gold"}, "9876543210": {"tier": "silver"}}
    harness.driver.update("accounts", "account_id", 12345, {"tier": "bronze"})
    harness.driver.delete("accounts", "account_id", 9876543210)
    harness.driver.insert("accounts", [{"account_id": 123, "tier": "tin"}])  # "123" is too short
    second = harness.sync("accounts")
    assert (counts(second), second.rejected) == ((0, 1, 1), 1)
    assert harness.profiles() == {"12345": {"tier": "bronze"}}


def test_null_and_short_user_ids_are_rejected_with_reasons_and_the_rest_applied(
    harness: Harness,
) -> None:
    schema = {"id": "int", "uid": "string", "plan": "string"}
    rows: list[Row] = [
        {"id": 1, "uid": "alice-1", "plan": "pro"},
        {"id": 2, "uid": None, "plan": "free"},
        {"id": 3, "uid": "abc", "plan": "pro"},
        {"id": 4, "uid": "bob-22", "plan": "free"},
    ]
    harness.driver.create_table("people", schema, rows)
    harness.add_source("people", "people", user_id="uid", props=[("plan", "plan")])
    first = harness.sync("people")
    assert (counts(first), first.rejected) == ((2, 0, 0), 2)
    assert first.run_id is not None
    reasons = sorted(r["reason"] for r in harness.store.rejected_rows(first.run_id))
    assert reasons == ['user_id "abc" is shorter than 5 characters', "user_id is null"]
    assert harness.profiles() == {"alice-1": {"plan": "pro"}, "bob-22": {"plan": "free"}}

    harness.driver.insert("people", [{"id": 5, "uid": "x", "plan": "team"}])
    harness.driver.update("people", "id", 4, {"plan": "team"})
    harness.driver.update("people", "id", 3, {"uid": "carol-3"})  # becomes valid: an insert
    second = harness.sync("people")
    # CDC rejects the changed rows that are invalid; a diff re-reads (and rejects) them all
    short_x = {
        "reason": 'user_id "x" is shorter than 5 characters',
        "row": {"user_id": "x", "plan": "team"},
    }
    null = {"reason": "user_id is null", "row": {"user_id": None, "plan": "free"}}
    wanted = [short_x] if harness.driver.strategy == "cdc" else [short_x, null]
    assert (counts(second), second.rejected) == ((1, 1, 0), len(wanted))
    assert second.run_id is not None
    rejected = harness.store.rejected_rows(second.run_id)
    assert sorted(rejected, key=lambda r: r["reason"]) == wanted
    assert harness.profiles() == expected_profiles(
        harness.driver.rows("people"), "uid", [("plan", "plan")]
    )
    assert sorted(harness.profiles()) == ["alice-1", "bob-22", "carol-3"]


# -- semantics 7: types, display names -----------------------------------------------------


def test_values_keep_their_types(users: Harness) -> None:
    assert users.profiles()["user-001"] == {
        "plan": "pro",
        "seats": 1,
        "Upgrade Propensity Score": 0.25,
        "active": True,
        "Renewed At": "2024-03-01T12:30:00Z",
    }
    later = datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    users.driver.update(
        "users",
        "uid",
        "user-002",
        {"seats": 2**40, "score": 0.1, "active": False, "renewed_at": later},
    )
    users.sync("users")
    props = users.profiles()["user-002"]
    assert props == {
        "plan": "free",
        "seats": 1099511627776,
        "Upgrade Propensity Score": 0.1,
        "active": False,
        "Renewed At": "2025-01-02T03:04:05.123456Z",
    }
    assert type(props["seats"]) is int and type(props["active"]) is bool
    assert json.loads(json.dumps(props)) == props


def test_display_names_name_the_properties(users: Harness) -> None:
    profile = users.store.get_profile("user-003")
    assert set(profile["properties"]) == {
        "plan",
        "seats",
        "Upgrade Propensity Score",
        "active",
        "Renewed At",
    }
    assert profile["properties"]["Upgrade Propensity Score"] == 0.25


def test_two_sources_fill_one_profile_and_a_delete_removes_only_its_own(users: Harness) -> None:
    d = users.driver
    d.create_table(
        "scores",
        {"uid": "string", "ltv": "float"},
        [{"uid": "user-001", "ltv": 10.5}, {"uid": "user-002", "ltv": 99.0}],
    )
    users.add_source("scores", "scores", user_id="uid", props=[("ltv", "LTV")])
    users.sync("scores")
    d.delete("scores", "uid", "user-001")
    d.delete("users", "uid", "user-002")
    assert counts(users.sync("scores")) == (0, 0, 1)
    assert counts(users.sync("users")) == (0, 0, 1)
    profiles = users.profiles()
    assert profiles["user-001"] == expected(users)["user-001"]
    assert profiles["user-002"] == {"LTV": 99.0}
    assert sorted(profiles) == ["user-001", "user-002", "user-003"]


# -- the query form ------------------------------------------------------------------------


def test_query_form_where_filter_turns_rows_into_inserts_and_deletes(harness: Harness) -> None:
    d = harness.driver
    if not d.supports_query:
        pytest.skip(f"{d.kind} does not run the query form under {d.strategy}")
    d.create_table(
        "users", SCHEMA, [user("user-001"), user("user-002", seats=2), user("user-003", seats=5)]
    )
    harness.add_query_source(
        "big",
        f'SELECT uid AS "user_id", plan AS "Plan", seats AS "Seats" '
        f"FROM {d.table_name('users')} WHERE seats >= 2",
    )

    def oracle() -> Profiles:
        props = [("plan", "Plan"), ("seats", "Seats")]
        return expected_profiles(d.rows("users"), "uid", props, where=lambda r: r["seats"] >= 2)

    first = harness.sync("big")
    assert counts(first) == (2, 0, 0)
    assert harness.profiles() == oracle()
    d.update("users", "uid", "user-001", {"seats": 3})  # starts matching: an insert
    d.update("users", "uid", "user-003", {"seats": 0})  # stops matching: a delete
    d.update("users", "uid", "user-002", {"plan": "team"})  # matches still: an update
    d.insert("users", [user("user-004", seats=0)])  # never matches: nothing
    second = harness.sync("big")
    assert counts(second) == (1, 1, 1)
    assert harness.profiles() == oracle()
    assert sorted(harness.profiles()) == ["user-001", "user-002"]


# -- semantics 9 and 10: drop-and-replace, lost retention, resync ---------------------------


def assert_refused(h: Harness, error: type[Exception], match: str, code: str) -> None:
    """Syncing ``users`` fails with ``error`` and leaves profiles, checkpoint and usage as
    they were, with the failed run recorded under ``code``."""
    before, checkpoint, used = h.profiles(), h.checkpoint("users"), h.used()
    with pytest.raises(error, match=match):
        h.sync("users")
    assert h.profiles() == before
    assert h.checkpoint("users") == checkpoint
    assert h.used() == used
    assert h.last_run("users")["error_code"] == code


def test_drop_and_replace_is_detected_and_resync_applies_only_real_differences(
    users: Harness,
) -> None:
    before = users.profiles()
    users.driver.replace_table(
        "users",
        SCHEMA,
        [user("user-001"), user("user-002", plan="team"), user("user-004", seats=7)],
    )
    if users.driver.detects_replace:
        assert_refused(users, TableReplacedError, "--resync", "table_replaced")
        result = users.sync("users", resync=True)
    else:  # a snapshot diff re-reads the table every time: the new one is simply the table
        result = users.sync("users")
    assert (counts(result), result.unchanged) == ((1, 1, 1), 1)
    assert result.operations == net_changes(before, expected(users))
    assert_in_sync(users)
    users.driver.update("users", "uid", "user-004", {"plan": "free"})  # and CDC goes on
    assert counts(users.sync("users")) == (0, 1, 0)
    assert_in_sync(users)


def test_lost_history_fails_until_a_resync_recovers(users: Harness) -> None:
    d = users.driver
    if not d.can_expire:
        pytest.skip(f"{d.kind} under {d.strategy} keeps no change history to lose")
    d.update("users", "uid", "user-002", {"plan": "team"})
    d.insert("users", [user("user-004")])
    d.delete("users", "uid", "user-003")
    d.expire_history("users")
    assert_refused(users, RetentionExceededError, "--resync", "retention_exceeded")
    result = users.sync("users", resync=True)
    assert (counts(result), result.unchanged) == ((1, 1, 1), 1)
    assert_in_sync(users)
    d.update("users", "uid", "user-004", {"plan": "free"})
    assert counts(users.sync("users")) == (0, 1, 0)
    assert_in_sync(users)


# -- semantics 11: quota -------------------------------------------------------------------


def test_quota_refusal_leaves_store_and_checkpoint_untouched(harness: Harness) -> None:
    harness.store.set_setting("operations_limit", "3")
    harness.driver.create_table("users", SCHEMA, [user("user-001"), user("user-002")])
    harness.add_source("users", "users", user_id="uid", props=PROPS)
    assert harness.sync("users").operations == 2
    harness.driver.insert("users", [user("user-003"), user("user-004")])
    assert_refused(harness, QuotaExceededError, "would reach 4", "quota_exceeded")
    assert harness.used() == 2
    # nothing was lost: once the change fits, the next sync applies it from the old checkpoint
    harness.driver.delete("users", "uid", "user-004")
    result = harness.sync("users")
    assert (counts(result), harness.used()) == ((1, 0, 0), 3)
    assert_in_sync(harness)
