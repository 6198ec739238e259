"""Change data capture from a real PostgreSQL through the real engine and store."""

from __future__ import annotations

import threading
import time

import pytest

from profilesync.errors import ChangeTrackingError, TableReplacedError
from profilesync.mapping import from_columns
from profilesync.model import Source
from profilesync.store.duckdb import DuckDBStore
from profilesync.sync import engine
from tests.postgres.conftest import Pg, add_query_source, add_table_source, profiles

pytestmark = pytest.mark.postgres

TYPED = [
    ("title", "Title"),
    ("score", "Score"),
    ("vip", "VIP"),
    ("seen_at", "Seen At"),
    ("born", "Born"),
    ("meta", "Meta"),
    ("amount", "Amount"),
    ("ratio", "Ratio"),
    ("seats", "Seats"),
    ("local_at", "Local At"),
    ("code", "Code"),
    ("never", "Never"),
]


def counts(result: object) -> tuple[int, int, int]:
    return result.inserted, result.updated, result.deleted  # type: ignore[attr-defined]


def test_insert_update_delete_and_null_out_reach_the_store(pg: Pg, pgstore: DuckDBStore) -> None:
    pg.create_users(rows=3)
    add_table_source(pgstore)
    first = engine.sync(pgstore, "users")
    assert (first.mode, counts(first)) == ("initial", (3, 0, 0))
    assert profiles(pgstore)["100002"] == {
        "Title": "title-2",
        "Score": 0.5,
        "VIP": True,
        "Seen At": "2024-03-01T14:00:00Z",
    }
    pg.run("INSERT INTO users VALUES (100004, 'new', 1.5, false, NULL)")
    pg.run("UPDATE users SET title = 'promoted', score = 9.75 WHERE uid = 100001")
    pg.run("UPDATE users SET seen_at = NULL, vip = NULL WHERE uid = 100002")
    pg.run("DELETE FROM users WHERE uid = 100003")
    second = engine.sync(pgstore, "users")
    assert (second.mode, counts(second), second.operations) == ("incremental", (1, 2, 1), 4)
    assert profiles(pgstore) == {
        "100001": {
            "Title": "promoted",
            "Score": 9.75,
            "VIP": False,
            "Seen At": "2024-03-01T13:00:00Z",
        },
        "100002": {"Title": "title-2", "Score": 0.5},
        "100004": {"Title": "new", "Score": 1.5, "VIP": False},
    }
    idle = engine.sync(pgstore, "users")
    assert (counts(idle), idle.read) == ((0, 0, 0), 0)


def test_snapshot_and_change_stream_give_identical_typed_values(
    pg: Pg, pgstore: DuckDBStore
) -> None:
    pg.run(
        "CREATE TABLE users (uid int PRIMARY KEY, title varchar(40), score real, vip boolean, "
        "seen_at timestamptz, born date, meta jsonb, amount numeric(12, 2), ratio float8, "
        "seats smallint, local_at timestamp, code char(5), never timestamptz)"
    )
    values = (
        "'Ünïcode, \"quoted\"\nline', 0.1, true, '2024-01-02 03:04:05.123456+02', '1990-07-08', "
        "'{\"plan\": [1, 2]}', 1234.50, 'NaN', 7, '2024-01-02 03:04:05', 'ab', 'infinity'"
    )
    pg.run(f"INSERT INTO users VALUES (100001, {values})")
    add_table_source(pgstore, props=TYPED)
    engine.sync(pgstore, "users")
    pg.run(f"INSERT INTO users VALUES (100002, {values})")
    pg.run("INSERT INTO users (uid, title) VALUES (100003, '')")
    engine.sync(pgstore, "users")
    got = profiles(pgstore)
    assert (
        got["100001"]
        == got["100002"]
        == {
            "Title": 'Ünïcode, "quoted"\nline',
            "Score": 0.1,
            "VIP": True,
            "Seen At": "2024-01-02T01:04:05.123456Z",
            "Born": "1990-07-08",
            "Meta": '{"plan": [1, 2]}',
            "Amount": 1234.5,
            "Seats": 7,
            "Local At": "2024-01-02T03:04:05Z",
            "Code": "ab   ",  # char(n) keeps its padding, as Postgres prints it
        }
    )  # NaN and infinity have no JSON form: read as NULL, as wal2json sends them
    assert got["100003"] == {"Title": ""}  # an empty string is a value, not NULL
    table = pgstore.con.execute(
        'SELECT typeof("Seats"), typeof("Amount"), typeof("Seen At") FROM profiles_1 LIMIT 1'
    ).fetchone()
    assert table == ("SMALLINT", "DOUBLE", "TIMESTAMP WITH TIME ZONE")


def test_integer_user_ids_become_strings_and_short_ones_are_rejected(
    pg: Pg, pgstore: DuckDBStore
) -> None:
    pg.run("CREATE TABLE users (uid int PRIMARY KEY, title text)")
    pg.run("INSERT INTO users VALUES (12345, 'a'), (42, 'too short')")
    add_table_source(pgstore, props=[("title", "Title")])
    first = engine.sync(pgstore, "users")
    assert (counts(first), first.rejected) == ((1, 0, 0), 1)
    pg.run("INSERT INTO users VALUES (1234567890, 'b'), (7, 'short')")
    second = engine.sync(pgstore, "users")
    assert (counts(second), second.rejected) == ((1, 0, 0), 1)
    assert profiles(pgstore) == {"12345": {"Title": "a"}, "1234567890": {"Title": "b"}}
    reasons = [r["reason"] for r in pgstore.rejected_rows(second.run_id or 0)]
    assert reasons == ['user_id "7" is shorter than 5 characters']


def test_changes_inside_one_transaction_net_to_their_last_state(
    pg: Pg, pgstore: DuckDBStore
) -> None:
    pg.create_users(rows=2)
    add_table_source(pgstore)
    engine.sync(pgstore, "users")
    with pg.conn.transaction():
        pg.run("INSERT INTO users (uid, title) VALUES (100009, 'fleeting')")
        pg.run("DELETE FROM users WHERE uid = 100009")  # insert-then-delete is nothing
        pg.run("UPDATE users SET title = 'first' WHERE uid = 100001")
        pg.run("UPDATE users SET title = 'second' WHERE uid = 100001")
        pg.run("DELETE FROM users WHERE uid = 100002")
        pg.run("INSERT INTO users (uid, title) VALUES (100002, 'reborn')")  # delete-then-insert
    pg.run("UPDATE users SET uid = 100007 WHERE uid = 100001")  # the key itself changes
    result = engine.sync(pgstore, "users")
    assert counts(result) == (1, 1, 1)
    assert profiles(pgstore) == {
        "100002": {"Title": "reborn"},
        "100007": {
            "Title": "second",
            "Score": 0.25,
            "VIP": False,
            "Seen At": "2024-03-01T13:00:00Z",
        },
    }


def test_first_sync_takes_concurrent_writes_exactly_once(pg: Pg, pgstore: DuckDBStore) -> None:
    """A transaction open while the slot is created, and a stream of commits around the
    snapshot: each row lands in the snapshot or in the stream, never both, never neither."""
    pg.run("CREATE TABLE users (uid bigint PRIMARY KEY, title text)")
    pg.run("INSERT INTO users SELECT 100000 + i, 'base' FROM generate_series(1, 2000) i")
    add_table_source(pgstore, props=[("title", "Title")])
    straddler = pg.session()
    straddler.autocommit = False
    straddler.execute("INSERT INTO users VALUES (500000, 'open across the slot creation')")
    stop = threading.Event()
    written: list[int] = []

    def writer() -> None:
        with pg.session() as conn:
            uid = 600000
            while not stop.is_set():
                conn.execute("INSERT INTO users VALUES (%s, 'concurrent')", [uid])
                written.append(uid)
                uid += 1

    def commit_later() -> None:
        time.sleep(0.5)  # the slot creation waits for this transaction to end
        straddler.commit()

    threads = [threading.Thread(target=writer), threading.Thread(target=commit_later)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.2)
        first = engine.sync(pgstore, "users")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        straddler.close()
    second = engine.sync(pgstore, "users")
    total = 2000 + 1 + len(written)
    assert first.inserted + second.inserted == total
    assert second.read == second.inserted  # nothing the snapshot held came again
    assert (second.updated, second.unchanged) == (0, 0)
    assert len(profiles(pgstore)) == total
    assert 0 < first.inserted - 2000 < len(written) + 1  # the writer really straddled the snapshot


def test_drop_and_replace_is_detected_by_oid_and_resync_applies_only_differences(
    pg: Pg, pgstore: DuckDBStore
) -> None:
    pg.create_users(rows=3)
    add_table_source(pgstore)
    engine.sync(pgstore, "users")
    before, checkpoint = profiles(pgstore), pgstore.get_source("users").checkpoint
    pg.run("UPDATE users SET title = 'old table change' WHERE uid = 100001")  # in the slot
    pg.run("DROP TABLE users")
    pg.create_users(rows=2)
    pg.run("UPDATE users SET title = 'changed' WHERE uid = 100002")
    with pytest.raises(TableReplacedError, match=r"OID changed .* --resync"):
        engine.sync(pgstore, "users")
    assert profiles(pgstore) == before
    assert pgstore.get_source("users").checkpoint == checkpoint
    result = engine.sync(pgstore, "users", resync=True)
    assert (result.mode, counts(result), result.unchanged) == ("resync", (0, 1, 1), 1)
    assert profiles(pgstore)["100002"]["Title"] == "changed"
    assert "100003" not in profiles(pgstore)
    pg.run("UPDATE users SET title = 'after' WHERE uid = 100001")  # and CDC goes on
    assert counts(engine.sync(pgstore, "users")) == (0, 1, 0)
    assert profiles(pgstore)["100001"]["Title"] == "after"


def test_truncate_asks_for_a_resync(pg: Pg, pgstore: DuckDBStore) -> None:
    pg.create_users(rows=3)
    add_table_source(pgstore)
    engine.sync(pgstore, "users")
    pg.run("TRUNCATE users")
    pg.run("INSERT INTO users (uid, title) VALUES (100009, 'reloaded')")
    with pytest.raises(TableReplacedError, match=r"truncated.*--resync"):
        engine.sync(pgstore, "users")
    result = engine.sync(pgstore, "users", resync=True)
    assert counts(result) == (1, 0, 3)
    assert profiles(pgstore) == {"100009": {"Title": "reloaded"}}


def test_unchanged_large_values_need_replica_identity_full(pg: Pg, pgstore: DuckDBStore) -> None:
    pg.run("CREATE TABLE users (uid bigint PRIMARY KEY, bio text, plan text)")
    # random hex does not compress below the TOAST threshold: stored out of line
    big = "(SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 300))"
    pg.run(f"INSERT INTO users VALUES (100001, {big}, 'free')")
    add_table_source(pgstore, props=[("bio", "Bio"), ("plan", "Plan")])
    engine.sync(pgstore, "users")
    pg.run("UPDATE users SET plan = 'pro' WHERE uid = 100001")  # bio unchanged: not sent
    with pytest.raises(ChangeTrackingError, match="REPLICA IDENTITY FULL"):
        engine.sync(pgstore, "users")
    pg.run("ALTER TABLE users REPLICA IDENTITY FULL")
    engine.sync(pgstore, "users", resync=True)
    pg.run("UPDATE users SET plan = 'team' WHERE uid = 100001")
    assert counts(engine.sync(pgstore, "users")) == (0, 1, 0)
    bio = pg.run("SELECT bio FROM users")[0][0]
    assert profiles(pgstore)["100001"] == {"Bio": bio, "Plan": "team"}


def test_user_id_outside_the_key_deletes_with_replica_identity_full(
    pg: Pg, pgstore: DuckDBStore
) -> None:
    pg.run("CREATE TABLE accounts (id serial PRIMARY KEY, email text, plan text)")
    pg.run("ALTER TABLE accounts REPLICA IDENTITY FULL")
    pg.run(
        "INSERT INTO accounts (email, plan) VALUES ('a@example.com', 'free'), ('b@example.com', 'pro')"
    )
    add_table_source(pgstore, "accounts", "public.accounts", "email", [("plan", "Plan")])
    engine.sync(pgstore, "accounts")
    pg.run("DELETE FROM accounts WHERE email = 'a@example.com'")
    pg.run("UPDATE accounts SET email = 'c@example.com' WHERE email = 'b@example.com'")
    assert counts(engine.sync(pgstore, "accounts")) == (1, 0, 2)
    assert profiles(pgstore) == {"c@example.com": {"Plan": "pro"}}


def test_query_form_with_where_follows_rows_in_and_out(pg: Pg, pgstore: DuckDBStore) -> None:
    pg.create_users(rows=3)
    add_query_source(
        pgstore,
        "big",
        'SELECT uid AS "user_id", upper(title) AS "Title" FROM public.users WHERE score >= 0.5',
    )
    assert counts(engine.sync(pgstore, "big")) == (2, 0, 0)
    pg.run("UPDATE users SET score = 0 WHERE uid = 100003")
    pg.run("UPDATE users SET score = 2, title = 'in' WHERE uid = 100001")
    assert counts(engine.sync(pgstore, "big")) == (1, 0, 1)
    assert profiles(pgstore) == {"100001": {"Title": "IN"}, "100002": {"Title": "TITLE-2"}}


def test_odd_schema_and_table_names(pg: Pg, pgstore: DuckDBStore) -> None:
    pg.run('CREATE SCHEMA "Sales, Data"')
    pg.create_users('"Sales, Data"."User.Profiles *"', rows=1)
    pg.create_users("public.users", rows=1)  # same columns, must not leak into the stream
    assert '"Sales, Data"."User.Profiles *"' in pgstore_tables(pgstore)
    add_table_source(pgstore, "odd", '"Sales, Data"."User.Profiles *"')
    engine.sync(pgstore, "odd")
    pg.run('UPDATE "Sales, Data"."User.Profiles *" SET title = \'seen\'')
    pg.run("UPDATE public.users SET title = 'other table'")
    assert counts(engine.sync(pgstore, "odd")) == (0, 1, 0)
    assert profiles(pgstore)["100001"]["Title"] == "seen"


def pgstore_tables(store: DuckDBStore) -> list[str]:
    from profilesync.warehouses import open_warehouse

    source = open_warehouse(store.get_connection("pg"))
    try:
        return source.list_tables()
    finally:
        source.close()


def test_diff_strategy_and_pushed_down_queries_use_no_slot(pg: Pg, pgstore: DuckDBStore) -> None:
    pg.create_users(rows=3)
    pg.run("CREATE TABLE plans (uid bigint, plan text)")
    pg.run("INSERT INTO plans VALUES (100001, 'pro'), (100002, 'free')")
    add_table_source(pgstore, "plain", props=[("title", "Title")], strategy="diff")
    add_query_source(
        pgstore,
        "joined",
        'SELECT u.uid AS "user_id", p.plan AS "Plan" FROM users u JOIN plans p USING (uid);',
        pushdown=True,
    )
    assert counts(engine.sync(pgstore, "plain")) == (3, 0, 0)
    assert counts(engine.sync(pgstore, "joined")) == (2, 0, 0)
    pg.run("DELETE FROM plans WHERE uid = 100002")
    pg.run("UPDATE users SET title = 'x' WHERE uid = 100003")
    assert counts(engine.sync(pgstore, "joined")) == (0, 0, 1)
    assert counts(engine.sync(pgstore, "plain")) == (0, 1, 0)
    assert profiles(pgstore)["100001"] == {"Title": "title-1", "Plan": "pro"}
    assert pg.slots() == []


def test_test_mapping_previews_without_creating_a_slot(pg: Pg, pgstore: DuckDBStore) -> None:
    pg.create_users(rows=3)
    source = pgstore.add_source(
        Source("users", "pg", from_columns("public.users", "uid", [("title", "Title")]))
    )
    report = engine.test_mapping(pgstore, source, preview_rows=2)
    assert report["ok"], report["checks"]
    assert report["sampled_rows"] == 3
    assert len(report["preview"]) == 2
    assert pg.slots() == []
