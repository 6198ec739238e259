"""The snowflake source end to end: the real engine and store, a stand-in account.

Snowflake cannot be reached from here. ``FakeSnowflake`` answers the statements the source
sends (each parsed with sqlglot's snowflake dialect) with results shaped like the recorded
ones in ``recorded/``; these tests check what a user sees after each sync.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
import sqlglot
from sqlglot import exp

from profilesync.errors import (
    ChangeTrackingError,
    ConfigurationError,
    MissingDependencyError,
    NotFoundError,
    RetentionExceededError,
    TableReplacedError,
    WarehouseUnavailableError,
)
from profilesync.model import Connection
from profilesync.store.duckdb import DuckDBStore
from profilesync.sync import engine
from profilesync.warehouses import validate_config
from profilesync.warehouses.snowflake import warehouse as snowflake_module
from profilesync.warehouses.snowflake.warehouse import SnowflakeWarehouse
from tests.warehouses.conftest import (
    SNOWFLAKE_CONFIG,
    add_source,
    checks_by_name,
    profiles,
    run_sync,
)
from tests.warehouses.fakes import FakeSnowflake

COLUMNS = {
    "USER_ID": "VARCHAR(16777216)",
    "PLAN": "VARCHAR(16777216)",
    "SEATS": "NUMBER(38,0)",
    "SCORE": "NUMBER(10,4)",
    "ACTIVE": "BOOLEAN",
    "SIGNED_UP": "TIMESTAMP_NTZ(9)",
}
PROPS = [
    ("plan", "Plan"),
    ("seats", "Seats"),
    ("score", "Score"),
    ("active", "Active"),
    ("signed_up", "Signed Up"),
]
T0 = datetime(2024, 5, 1, 9, 30, 15, 123456)


def user(
    uid: str, plan: str | None = "free", seats: int = 1, score: str = "0.5000"
) -> dict[str, Any]:
    return {
        "USER_ID": uid,
        "PLAN": plan,
        "SEATS": seats,
        "SCORE": Decimal(score),
        "ACTIVE": seats > 1,
        "SIGNED_UP": T0,
    }


def expected(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What the store must hold for the table's rows: non-null values, typed as JSON."""
    out = {}
    for row in rows:
        values = {
            "Plan": row["PLAN"],
            "Seats": row["SEATS"],
            "Score": float(row["SCORE"]),
            "Active": row["ACTIVE"],
            "Signed Up": row["SIGNED_UP"].replace(tzinfo=UTC).isoformat().replace("+00:00", "Z"),
        }
        out[row["USER_ID"]] = {k: v for k, v in values.items() if v is not None}
    return out


@pytest.fixture
def users(snowflake: FakeSnowflake, store: DuckDBStore) -> FakeSnowflake:
    """``ANALYTICS.PUBLIC.USERS`` with three users, a source over it and its first sync."""
    snowflake.create_table(
        "USERS",
        COLUMNS,
        [user("u-0001"), user("u-0002", "pro", 5, "0.9100"), user("u-0003", "team", 12)],
    )
    add_source(store, "users", "sf", table="public.users", user_id="user_id", properties=PROPS)
    first = run_sync(store, "users")
    assert (first["mode"], first["inserted"], first["operations"]) == ("initial", 3, 3)
    return snowflake


def selects(fake: FakeSnowflake) -> list[exp.Select]:
    """The SELECTs that read a table (not ``SELECT CURRENT_TIMESTAMP()``)."""
    return [
        t for t in fake.parsed("snowflake") if isinstance(t, exp.Select) and t.args.get("from_")
    ]


def literal_ts(node: exp.Expression) -> str:
    assert isinstance(node, exp.Cast) and node.to.this == exp.DataType.Type.TIMESTAMPTZ
    return str(node.this.this)


# -- initial snapshot ----------------------------------------------------------------------


def test_first_sync_reads_the_table_at_the_timestamp_it_records(
    users: FakeSnowflake, store: DuckDBStore
) -> None:
    assert profiles(store) == expected(users.rows("USERS"))
    source = store.get_source("users")
    assert source.checkpoint is not None
    data = [s for s in selects(users) if s.args["from_"].this.name == "USERS"]
    assert len(data) == 1
    at = data[0].args["from_"].this.args["when"]
    # the snapshot is read AT the timestamp recorded as the checkpoint, with its UTC offset
    assert at.this == "AT" and literal_ts(at.expression) == source.checkpoint.position
    assert datetime.fromisoformat(source.checkpoint.position).utcoffset() == timedelta(0)
    # the identity is the table's created_on from SHOW TABLES
    assert source.checkpoint.identity == users.table("USERS").created_on.isoformat()


def test_unquoted_upper_case_columns_map_in_lower_case_and_keep_their_types(
    users: FakeSnowflake, store: DuckDBStore
) -> None:
    profile = store.get_profile("u-0002")["properties"]
    assert profile == {
        "Plan": "pro",
        "Seats": 5,
        "Score": 0.91,
        "Active": True,
        "Signed Up": "2024-05-01T09:30:15.123456Z",
    }
    select = next(s for s in selects(users) if s.args["from_"].this.name == "USERS")
    # columns are named as Snowflake stores them and aliased to the mapping's names
    first = select.selects[0]
    assert first.this.this.quoted and first.this.name == "USER_ID" and first.alias == "user_id"


def test_numeric_user_ids_become_decimal_strings_across_narrow_batches(
    snowflake: FakeSnowflake, store: DuckDBStore
) -> None:
    # NUMBER(38,0) arrives as int8 in one chunk and int32 in the next
    snowflake.create_table(
        "ACCOUNTS",
        {"ACCOUNT_ID": "NUMBER(38,0)", "MRR": "NUMBER(38,0)"},
        [
            {"ACCOUNT_ID": 100001, "MRR": 5},
            {"ACCOUNT_ID": 100002, "MRR": 7},
            {"ACCOUNT_ID": 2_000_000_001, "MRR": 70_000},
        ],
    )
    add_source(
        store, "accounts", "sf", table="accounts", user_id="account_id", properties=[("mrr", "MRR")]
    )
    result = run_sync(store, "accounts")
    assert result["inserted"] == 3
    assert profiles(store) == {
        "100001": {"MRR": 5},
        "100002": {"MRR": 7},
        "2000000001": {"MRR": 70000},
    }


# -- incremental changes -------------------------------------------------------------------


def test_changes_apply_inserts_updates_deletes_and_null_outs(
    users: FakeSnowflake, store: DuckDBStore
) -> None:
    before = store.get_source("users").checkpoint
    assert before is not None
    users.update("USERS", "USER_ID", "u-0001", {"PLAN": "pro", "SEATS": 3})  # update pair
    users.update("USERS", "USER_ID", "u-0003", {"PLAN": None})  # NULL-out
    users.delete("USERS", "USER_ID", "u-0002")
    users.insert("USERS", [user("u-0004", "team", 8), user("u-0005")])
    users.delete("USERS", "USER_ID", "u-0005")  # inserted and deleted between syncs: nothing
    users.tick(60)

    result = run_sync(store, "users")

    assert (result["inserted"], result["updated"], result["deleted"]) == (1, 2, 1)
    assert result["operations"] == 4
    assert profiles(store) == expected(users.rows("USERS"))
    assert "Plan" not in store.get_profile("u-0003")["properties"]
    changes = [s for s in selects(users) if s.args["from_"].this.args.get("changes")]
    assert len(changes) == 1
    clause = changes[0].args["from_"].this.args["changes"]
    after = store.get_source("users").checkpoint
    assert after is not None
    # the window starts at the old checkpoint and ends at the new one
    assert literal_ts(clause.args["at_before"].expression) == before.position
    assert literal_ts(clause.args["end"].expression) == after.position
    assert after.position > before.position
    assert [p.alias_or_name for p in changes[0].selects][-2:] == [
        "METADATA$ACTION",
        "METADATA$ISUPDATE",
    ]


def test_an_update_that_changes_the_user_id_moves_the_profile(
    users: FakeSnowflake, store: DuckDBStore
) -> None:
    users.update("USERS", "USER_ID", "u-0002", {"USER_ID": "u-0202"})
    result = run_sync(store, "users")
    assert (result["inserted"], result["deleted"]) == (1, 1)
    assert profiles(store) == expected(users.rows("USERS"))


def test_a_sync_without_changes_applies_nothing(users: FakeSnowflake, store: DuckDBStore) -> None:
    users.tick(3600)
    result = run_sync(store, "users")
    assert (result["operations"], result["read"]) == (0, 0)
    assert profiles(store) == expected(users.rows("USERS"))


# -- test mapping --------------------------------------------------------------------------


def test_mapping_with_change_tracking_off_fails_with_the_sql_to_run(
    snowflake: FakeSnowflake, store: DuckDBStore
) -> None:
    snowflake.create_table(
        "USERS", COLUMNS, [user("u-0001")], change_tracking=False, retention_days=7
    )
    source = add_source(
        store, "users", "sf", table="public.users", user_id="user_id", properties=PROPS
    )
    report = engine.test_mapping(store, source)
    assert not report["ok"]
    tracking = checks_by_name(report)["change tracking"]
    assert tracking["level"] == "fail"
    assert tracking["fix_sql"] == "ALTER TABLE ANALYTICS.PUBLIC.USERS SET CHANGE_TRACKING = TRUE;"
    assert report["preview"][0]["user_id"] == "u-0001"
    with pytest.raises(ChangeTrackingError, match="SET CHANGE_TRACKING = TRUE"):
        run_sync(store, "users")  # a CDC source does not start where it could not follow


@pytest.mark.parametrize(
    ("days", "frequency", "level"),
    [
        (1, "24h", "fail"),  # Standard Edition's 1 day: a daily sync has no margin
        (1, "13h", "fail"),
        (1, "12h", "warn"),  # ... 12 hours is the most it allows, with a warning
        (3, "1d", "warn"),
        (7, "12h", "pass"),
        (7, "3d", "pass"),
        (7, "4d", "fail"),
        (0, "1h", "fail"),  # no Time Travel at all
    ],
)
def test_retention_rule_refuses_a_frequency_over_half_the_retention(
    snowflake: FakeSnowflake, store: DuckDBStore, days: int, frequency: str, level: str
) -> None:
    snowflake.create_table("USERS", COLUMNS, [user("u-0001")], retention_days=days)
    source = add_source(
        store,
        "users",
        "sf",
        table="users",
        user_id="user_id",
        properties=PROPS,
        frequency=frequency,
    )
    retention = checks_by_name(engine.test_mapping(store, source))["retention"]
    assert retention["level"] == level, retention["message"]
    if level != "pass":
        assert retention["fix_sql"] == (
            "ALTER TABLE ANALYTICS.PUBLIC.USERS SET DATA_RETENTION_TIME_IN_DAYS = 7; "
            "ALTER TABLE ANALYTICS.PUBLIC.USERS SET CHANGE_TRACKING = TRUE;"
        )
    if level == "fail" and days:
        assert "Standard Edition" in retention["message"]


def test_diff_strategy_does_not_need_change_tracking(
    snowflake: FakeSnowflake, store: DuckDBStore
) -> None:
    snowflake.create_table(
        "USERS", COLUMNS, [user("u-0001"), user("u-0002")], change_tracking=False
    )
    source = add_source(
        store, "users", "sf", table="users", user_id="user_id", properties=PROPS, strategy="diff"
    )
    assert engine.test_mapping(store, source)["ok"]
    assert run_sync(store, "users")["inserted"] == 2
    snowflake.update("USERS", "USER_ID", "u-0002", {"PLAN": "pro"})
    snowflake.delete("USERS", "USER_ID", "u-0001")
    result = run_sync(store, "users")
    assert (result["mode"], result["updated"], result["deleted"], result["unchanged"]) == (
        "diff",
        1,
        1,
        0,
    )
    assert profiles(store) == expected(snowflake.rows("USERS"))
    assert not any(s.args["from_"].this.args.get("changes") for s in selects(snowflake))


def test_unknown_table_and_column_are_named(snowflake: FakeSnowflake, store: DuckDBStore) -> None:
    snowflake.create_table("USERS", COLUMNS, [user("u-0001")])
    with pytest.raises(NotFoundError, match=r"ANALYTICS\.PUBLIC\.CUSTOMERS not found"):
        add_source(store, "c", "sf", table="customers", user_id="user_id")
    with pytest.raises(NotFoundError, match="has no column"):
        add_source(store, "u", "sf", table="users", user_id="uid")


# -- change tracking, replacement and retention failures ------------------------------------


def test_change_tracking_turned_off_fails_the_sync_with_the_fix(
    users: FakeSnowflake, store: DuckDBStore
) -> None:
    users.set_change_tracking("USERS", False)
    with pytest.raises(ChangeTrackingError, match="SET CHANGE_TRACKING = TRUE") as failure:
        run_sync(store, "users")
    assert "--resync" in str(failure.value)
    assert store.runs("users")[0]["status"] == "failed"


def test_change_tracking_gap_needs_a_resync(users: FakeSnowflake, store: DuckDBStore) -> None:
    users.set_change_tracking("USERS", False)
    users.update("USERS", "USER_ID", "u-0001", {"PLAN": "lost"})
    users.set_change_tracking("USERS", True)
    with pytest.raises(
        RetentionExceededError, match="Change tracking is not enabled or has been missing"
    ):
        run_sync(store, "users")
    result = run_sync(store, "users", resync=True)
    assert (result["mode"], result["updated"]) == ("resync", 1)
    assert profiles(store) == expected(users.rows("USERS"))


def test_drop_and_replace_is_detected_through_created_on(
    users: FakeSnowflake, store: DuckDBStore
) -> None:
    old = users.rows("USERS")
    users.tick(60)
    users.replace_table("USERS", [old[0], {**old[1], "PLAN": "enterprise"}, user("u-0009")])
    with pytest.raises(TableReplacedError, match="created_on changed") as failure:
        run_sync(store, "users")
    assert "--resync" in str(failure.value)
    assert profiles(store) == expected(old)  # nothing applied
    result = run_sync(store, "users", resync=True)
    # only the rows that really differ: one new, one changed, one gone, one unchanged
    assert (result["inserted"], result["updated"], result["deleted"], result["unchanged"]) == (
        1,
        1,
        1,
        1,
    )
    assert profiles(store) == expected(users.rows("USERS"))
    users.update("USERS", "USER_ID", "u-0009", {"SEATS": 4})
    assert run_sync(store, "users")["updated"] == 1


def test_a_checkpoint_older_than_the_retention_is_refused_before_reading(
    users: FakeSnowflake, store: DuckDBStore
) -> None:
    users.update("USERS", "USER_ID", "u-0001", {"PLAN": "pro"})
    users.tick(25 * 3600)
    with pytest.raises(RetentionExceededError, match="DATA_RETENTION_TIME_IN_DAYS = 1") as failure:
        run_sync(store, "users")
    assert "--resync" in str(failure.value)
    assert not any(s.args["from_"].this.args.get("changes") for s in selects(users))
    result = run_sync(store, "users", resync=True)
    assert result["updated"] == 1
    assert profiles(store) == expected(users.rows("USERS"))


def test_time_travel_out_of_range_from_snowflake_is_a_retention_error(
    users: FakeSnowflake, store: DuckDBStore
) -> None:
    users.update("USERS", "USER_ID", "u-0001", {"PLAN": "pro"})
    users.purge_history("USERS")  # within the retention by the clock, but Snowflake says no
    with pytest.raises(
        RetentionExceededError, match="Time travel data is not available"
    ) as failure:
        run_sync(store, "users")
    assert "changes of ANALYTICS.PUBLIC.USERS" in str(failure.value)
    assert "DATA_RETENTION_TIME_IN_DAYS" in str(failure.value)
    assert store.runs("users")[0]["error_code"] == "retention_exceeded"


# -- the query form --------------------------------------------------------------------------


def test_query_with_a_join_runs_in_snowflake_as_a_snapshot_diff(
    snowflake: FakeSnowflake, store: DuckDBStore
) -> None:
    snowflake.create_table("USERS", COLUMNS, [user("u-0001", "pro"), user("u-0002", "team")])
    snowflake.create_table(
        "PLANS",
        {"NAME": "VARCHAR(16777216)", "PRICE": "NUMBER(10,2)"},
        [{"NAME": "pro", "PRICE": Decimal("20.00")}, {"NAME": "team", "PRICE": Decimal("45.50")}],
    )
    query = (
        'SELECT u.user_id AS "user_id", p.price AS plan_price FROM users u '
        "JOIN plans p ON p.name = u.plan"
    )
    source = add_source(store, "prices", "sf", query=query, strategy="diff")
    assert source.mapping.query == query
    report = engine.test_mapping(store, source)
    assert report["ok"] and report["sampled_rows"] == 2
    assert run_sync(store, "prices")["inserted"] == 2
    snowflake.update("PLANS", "NAME", "team", {"PRICE": Decimal("49.00")})
    result = run_sync(store, "prices")
    assert (result["updated"], result["unchanged"]) == (1, 1)
    assert profiles(store) == {"u-0001": {"plan_price": 20.0}, "u-0002": {"plan_price": 49.0}}


# -- configuration -------------------------------------------------------------------------


def test_config_needs_credentials_and_knows_its_secrets() -> None:
    with pytest.raises(ConfigurationError, match=r"password=\.\.\. or a key pair"):
        validate_config("snowflake", {"account": "a", "user": "u", "database": "d"})
    with pytest.raises(ConfigurationError, match="needs account"):
        validate_config("snowflake", {"user": "u", "database": "d", "password": "p"})
    with pytest.raises(ConfigurationError, match="unknown snowflake setting"):
        validate_config("snowflake", {**SNOWFLAKE_CONFIG, "passwd": "x"})
    config = validate_config("snowflake", dict(SNOWFLAKE_CONFIG))
    assert config["schema"] == "PUBLIC"
    assert "password" in SnowflakeWarehouse.secret_fields


def test_without_the_connector_the_error_gives_the_pip_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "snowflake", None)
    monkeypatch.setitem(sys.modules, "snowflake.connector", None)
    source = SnowflakeWarehouse(Connection("sf", "snowflake", dict(SNOWFLAKE_CONFIG)))
    with pytest.raises(MissingDependencyError, match=r'pip install "profilesync\[snowflake\]"'):
        source.list_tables()


def test_a_pem_private_key_becomes_der_and_a_bad_one_is_explained() -> None:
    pytest.importorskip("cryptography")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"s3cret"),
    ).decode()
    der = snowflake_module._der_private_key(pem, "s3cret")
    loaded = serialization.load_der_private_key(der, password=None)
    assert loaded.private_numbers() == key.private_numbers()  # type: ignore[union-attr]
    with pytest.raises(ConfigurationError, match="not a readable PEM key"):
        snowflake_module._der_private_key("-----BEGIN PRIVATE KEY-----\nxx", None)


def test_every_statement_is_snowflake_sql(users: FakeSnowflake, store: DuckDBStore) -> None:
    users.update("USERS", "USER_ID", "u-0001", {"PLAN": "pro"})
    run_sync(store, "users")
    engine.test_mapping(store, store.get_source("users"))
    kinds = {type(sqlglot.parse_one(s, read="snowflake")).__name__ for s in users.statements}
    assert kinds == {"Select", "Show", "Describe"}


def test_list_tables_names_them_schema_dot_table(
    snowflake: FakeSnowflake, store: DuckDBStore
) -> None:
    snowflake.create_table("USERS", COLUMNS, [])
    snowflake.create_table("Plan Types", {"ID": "NUMBER(38,0)"}, [], schema="BILLING")
    source = SnowflakeWarehouse(store.get_connection("sf"))
    try:
        tables = source.list_tables()
        assert tables == ['BILLING."Plan Types"', "PUBLIC.USERS"]
        # a listed name reads back as the same table
        assert source.table_schema(tables[0]).names == ["id"]
    finally:
        source.close()


def test_a_failed_connection_is_an_error_users_can_act_on(
    snowflake: FakeSnowflake, store: DuckDBStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.warehouses.fakes import DatabaseError

    # both come as errno 250001, SQLSTATE 08001 (the first as connector 5.2 words a failed
    # DNS lookup, the second as Snowflake's documentation shows a refused login)
    unreachable = DatabaseError(
        "250001 (08001): Failed to login: HTTP request failed after retries: login request. "
        "failed to lookup address information: Name or service not known"
    )
    refused = DatabaseError(
        "250001 (08001): Failed to connect to DB: xy12345.snowflakecomputing.com:443. "
        "Incorrect username or password was specified."
    )
    source = SnowflakeWarehouse(store.get_connection("sf"))
    for raised, expected_error in (
        (unreachable, WarehouseUnavailableError),
        (refused, ConfigurationError),
    ):

        def refuse(raised: Exception = raised, **params: Any) -> Any:
            raise raised

        monkeypatch.setattr(sys.modules["snowflake.connector"], "connect", refuse)
        with pytest.raises(expected_error, match="250001") as failure:
            source.list_tables()
        assert failure.value.retriable == (expected_error is WarehouseUnavailableError)


def test_empty_query_results_are_typed_from_the_cursor_description() -> None:
    described = [
        ("ID", 0, None, None, 38, 0, False),
        ("PRICE", 0, None, None, 10, 2, True),
        ("RATIO", 1, None, None, None, None, True),
        ("AT", 6, None, None, 0, 9, True),
        ("OK", 13, None, None, None, None, True),
        ("NAME", 2, None, None, None, None, True),
    ]
    assert [snowflake_module.description_type(d) for d in described] == [
        pa.int64(),
        pa.decimal128(10, 2),
        pa.float64(),
        pa.timestamp("us", tz="UTC"),
        pa.bool_(),
        pa.string(),
    ]
