"""``profilesync demo --warehouse postgres``: the Delta demo's flow against a real PostgreSQL.

It starts a throwaway server (Debian's PostgreSQL 15 with wal2json, ``wal_level =
logical``) in ``<dir>/postgres``, creates the same two tables, syncs them by logical
decoding (one replication slot per source), changes them with plain SQL, syncs again and
shows what changed. The server is stopped at the end; its files stay in the directory.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from profilesync import pgserver
from profilesync.app import Store, open_store
from profilesync.demo.common import cli_command, describe_backend
from profilesync.demo.delta import (
    DMAS,
    SCORES_QUERY,
    SENIORITY,
    TITLES,
    print_diff,
    print_rejected,
    sync_all,
    users_mapping,
)
from profilesync.mapping import from_query
from profilesync.model import Connection, Source

if TYPE_CHECKING:
    import psycopg

DATABASE = "warehouse"
SCHEMA_SQL = """
CREATE SCHEMA prod_users;
CREATE SCHEMA ml_models;
CREATE TABLE prod_users.demo_data (
    uid bigint PRIMARY KEY, title text, seniority text, dma text, num_purchases bigint);
CREATE TABLE ml_models.prod_propensity_scoring (
    user_id text PRIMARY KEY, upgrade_propensity_score double precision, user_model_version text);
"""
CHANGES_SQL = [
    (
        "UPDATE prod_users.demo_data SET title = 'Head of Data', seniority = 'principal' WHERE uid = 100003",
        "100003: promoted (title, seniority) and re-scored by model v2",
    ),
    ("DELETE FROM prod_users.demo_data WHERE uid = 100005", "100005: deleted from the users table"),
    ("UPDATE prod_users.demo_data SET dma = NULL WHERE uid = 100007", "100007: DMA set to NULL"),
    (
        "INSERT INTO prod_users.demo_data VALUES (100021, 'Analyst', 'junior', 'Boston', 1), "
        "(100022, 'Data Engineer', 'mid', 'Chicago', 0)",
        "100021, 100022: new users",
    ),
    (
        "INSERT INTO prod_users.demo_data VALUES (123, 'Intern', 'junior', 'Boston', 2)",
        "123: a new row whose user_id is too short (rejected with a reason)",
    ),
    (
        "UPDATE ml_models.prod_propensity_scoring SET upgrade_propensity_score = 0.97, "
        "user_model_version = 'v2' WHERE user_id = '100003'",
        "",
    ),
]


def build_warehouse(conn: psycopg.Connection[Any], users: int = 20, seed: int = 7) -> None:
    """The Delta demo's tables and rows, as Postgres tables with primary keys."""
    rng = random.Random(seed)
    uids = [100_001 + i for i in range(users)]
    conn.execute(SCHEMA_SQL)
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO prod_users.demo_data VALUES (%s, %s, %s, %s, %s)",
            [
                (u, rng.choice(TITLES), rng.choice(SENIORITY), rng.choice(DMAS), rng.randint(0, 40))
                for u in uids
            ],
        )
        cur.executemany(
            "INSERT INTO ml_models.prod_propensity_scoring VALUES (%s, %s, %s)",
            [(str(u), round(rng.random(), 3), "v1") for u in uids],
        )


def run_demo(directory: Path, console: Console, backend: str | None = None) -> None:
    """The demo in ``directory`` (replaced), its home on ``backend`` (duckdb by default)."""
    import psycopg

    directory = directory.resolve()
    if directory.exists():
        shutil.rmtree(directory)
    home = directory / "home"
    console.print(f"[bold]profilesync demo[/] (PostgreSQL) in {directory}")
    server = pgserver.start(directory / "postgres")
    try:
        with psycopg.connect(server.dsn(), autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {DATABASE}")
        dsn = server.dsn(DATABASE)
        console.print(
            f"  warehouse: PostgreSQL 15 on 127.0.0.1:{server.port} ({server.data_dir}), wal_level = logical"
        )
        with psycopg.connect(dsn, autocommit=True) as conn, open_store(home, backend) as store:
            console.print(f"  store: {describe_backend(backend)}")
            build_warehouse(conn)
            _add_sources(store, dsn)
            console.print("\n[bold]1. first sync[/] (snapshot + a replication slot per source)")
            sync_all(store, console)
            before = {p["user_id"]: p for p in store.export_profiles()}
            console.print("\n[bold]2. the warehouse changes[/] (plain SQL)")
            for sql, story in CHANGES_SQL:
                conn.execute(sql)
                if story:
                    console.print(f"  - {story}")
            console.print("\n[bold]3. incremental sync[/] (logical decoding with wal2json)")
            sync_all(store, console)
            after = {p["user_id"]: p for p in store.export_profiles()}
            print_diff(console, before, after)
            print_rejected(store, console)
            slots = [r[0] for r in conn.execute("SELECT slot_name FROM pg_replication_slots")]
            console.print(f"  replication slots on the server: {', '.join(slots)}")
    finally:
        server.stop()
    console.print(f"\nTry: [bold]{cli_command()} --home {home} profile get 100003 --json[/]")
    console.print(f"     {cli_command()} --home {home} runs users")
    console.print(
        f"The PostgreSQL server was stopped; its files are in {server.data_dir.parent}. "
        f"`pg_ctl -D {server.data_dir} start` runs it again (as the server's user)."
    )


def _add_sources(store: Store, dsn: str) -> None:
    store.add_connection(Connection("pg", "postgres", {"dsn": dsn}))
    store.add_source(Source("users", "pg", users_mapping()))
    store.add_source(Source("scores", "pg", from_query(SCORES_QUERY, "postgres")))
