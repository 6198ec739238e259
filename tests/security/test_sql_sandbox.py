"""A user's SQL never reaches a file the server can read.

Every engine that runs SQL a user wrote is tried with file access: a DuckDB warehouse's
``--strategy diff`` query (library and CLI), a DuckLake query, the CDC ``--query`` form
whose expressions the transform engine evaluates, and the store's own connection that
answers event queries. Each case asserts what a user sees (a refusal in one line that
names the function, or a query that fails cleanly) and that the secret's text reaches
neither the output nor the store.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from profilesync.errors import ConfigurationError, ProfilesyncError
from profilesync.events import ingest
from profilesync.events.query import Filter, PropertyRef, SegmentationQuery, segmentation
from profilesync.mapping import QUERY_TABLE, quote
from profilesync.model import Connection, Mapping, PropertyMapping, Source
from profilesync.store.duckdb import DuckDBStore
from profilesync.sync import engine
from profilesync.sync.transform import transform
from profilesync.warehouses.duckdb.warehouse import DuckDBWarehouse
from profilesync.warehouses.ducklake.warehouse import DuckLakeWarehouse
from tests.conftest import Cli, Warehouse, resolve_and_add, users_table
from tests.events.conftest import World, build_world
from tests.robustness.conftest import assert_cli_refused, store_state
from tests.sources.conftest import USERS, Lake, user
from tests.sources.conftest import Warehouse as DuckDBFile

#: the secret's text; a fresh one per run, so a match can only come from the file
MARKER = f"TOPSECRET-{uuid.uuid4().hex}"


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A file outside every warehouse and home, holding :data:`MARKER`."""
    folder = tmp_path / "private"
    folder.mkdir()
    path = folder / "secret.key"
    path.write_text(MARKER + "\n")
    return path


@pytest.fixture
def wh(tmp_path: Path) -> DuckDBFile:
    """A DuckDB warehouse file with a ``main.users`` table."""
    warehouse = DuckDBFile(tmp_path / "warehouse.duckdb")
    warehouse.create_table("users", USERS, [user("alice-1"), user("bob-22")])
    return warehouse


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckDBStore]:
    with DuckDBStore(tmp_path / "home") as s:
        yield s


def attacks(secret: Path, tmp_path: Path) -> dict[str, tuple[str, str]]:
    """Query name -> (SQL, what the refusal must name: the function with its parentheses,
    or the statement)."""
    other = tmp_path / "other.duckdb"
    duckdb.connect(str(other)).close()
    s = str(secret)
    return {
        "read_text": (f"SELECT content AS user_id, 1 AS p FROM read_text('{s}')", "read_text()"),
        "read_blob": (
            f"SELECT hex(content) AS user_id, 1 AS p FROM read_blob('{s}')",
            "read_blob()",
        ),
        "read_csv": (
            f"SELECT column0 AS user_id, 1 AS p FROM read_csv('{s}', header = false)",
            "read_csv()",
        ),
        "glob": (f"SELECT file AS user_id, 1 AS p FROM glob('{secret.parent}/*')", "glob()"),
        "scalar subquery": (
            f"SELECT uid AS user_id, (SELECT content FROM read_text('{s}')) AS p FROM main.users",
            "read_text()",
        ),
        "union": (
            "SELECT uid AS user_id, plan AS p FROM main.users UNION ALL "
            f"SELECT content, 'x' FROM read_text('{s}')",
            "read_text()",
        ),
        "path as table": (f"SELECT column0 AS user_id, 1 AS p FROM '{s}'", "names a file"),
        "query()": (
            f"SELECT * FROM query('SELECT content AS user_id FROM read_text(''{s}'')')",
            "query()",
        ),
        "attach": (f"ATTACH '{other}' AS other", "ATTACH"),
        "copy": (f"COPY (SELECT 1) TO '{tmp_path / 'out.csv'}'", "COPY"),
    }


ATTACKS = [
    "read_text",
    "read_blob",
    "read_csv",
    "glob",
    "scalar subquery",
    "union",
    "path as table",
    "query()",
    "attach",
    "copy",
]


def assert_secret_absent(home: Path, *texts: str) -> None:
    """Not in the store file (read after the command exited) nor in ``texts``."""
    assert MARKER not in json.dumps(store_state(home), default=str)
    for text in texts:
        assert MARKER not in text


def assert_store_clean(store: DuckDBStore) -> None:
    """Not in any profile, nor in any run's error (for a store this process holds open)."""
    assert MARKER not in json.dumps(list(store.export_profiles()), default=str)
    runs = [store.runs(s.name) for s in store.list_sources()]
    assert MARKER not in json.dumps(runs, default=str)


# -- a DuckDB warehouse's query (snapshot diff) ------------------------------------------


@pytest.mark.parametrize("attack", ATTACKS)
def test_a_duckdb_source_query_that_reads_files_is_refused(
    attack: str, tmp_path: Path, secret: Path, wh: DuckDBFile, store: DuckDBStore
) -> None:
    sql, word = attacks(secret, tmp_path)[attack]
    store.add_connection(Connection("wh", "duckdb", wh.connection_config()))
    with pytest.raises(ConfigurationError) as refused:
        resolve_and_add(store, "s", "wh", query=sql, strategy="diff")
    message = str(refused.value)
    assert word in message and rule(word) in message and "\n" not in message
    assert store.list_sources() == []
    assert MARKER not in message
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize("attack", ["read_text", "scalar subquery", "attach"])
def test_the_cli_refuses_a_query_that_reads_files(
    attack: str, tmp_path: Path, secret: Path, wh: DuckDBFile
) -> None:
    sql, word = attacks(secret, tmp_path)[attack]
    cli = Cli(tmp_path / "home", tmp_path)
    cli.ok("connection", "add", "wh", "--kind", "duckdb", "--path", str(wh.path))
    before = store_state(cli.home)
    proc = cli("source", "add", "s", "--connection", "wh", "--query", sql, "--strategy", "diff")
    assert_cli_refused(proc, word, rule(word))
    assert store_state(cli.home) == before
    assert_secret_absent(cli.home, proc.stdout, proc.stderr)


def rule(word: str) -> str:
    """What a refusal says besides the name: statements are not queries, files not tables."""
    return "one SELECT" if word.isupper() else "not allowed"


def test_a_saved_query_is_checked_again_before_it_runs(
    tmp_path: Path, secret: Path, wh: DuckDBFile, store: DuckDBStore
) -> None:
    """A source saved without the check (by an older release) fails its sync cleanly."""
    store.add_connection(Connection("wh", "duckdb", wh.connection_config()))
    sql = f"SELECT content AS user_id, 1 AS p FROM read_text('{secret}')"
    props = (PropertyMapping("p", quote("p"), "p"),)
    mapping = Mapping(QUERY_TABLE, quote("user_id"), props, ("user_id", "p"), query=sql)
    store.add_source(Source("s", "wh", mapping, strategy="diff"))
    with pytest.raises(ProfilesyncError, match=r"read_text\(\): .* not allowed"):
        engine.sync(store, "s")
    assert list(store.export_profiles()) == []
    assert_store_clean(store)


def test_the_warehouse_connection_reaches_only_its_own_file(
    tmp_path: Path, secret: Path, wh: DuckDBFile
) -> None:
    source = DuckDBWarehouse(Connection("wh", "duckdb", wh.connection_config()))
    try:
        assert source.con.execute("SELECT count(*) FROM main.users").fetchone() == (2,)
        with pytest.raises(duckdb.PermissionException, match="disabled by configuration"):
            source.con.execute(f"SELECT content FROM read_text('{secret}')")
        with pytest.raises(duckdb.PermissionException):
            source.con.execute(f"ATTACH '{tmp_path / 'other.duckdb'}' AS other")
        with pytest.raises(duckdb.Error, match="locked"):
            source.con.execute("SET enable_external_access = true")
    finally:
        source.close()


# -- DuckLake --------------------------------------------------------------------------


def test_a_ducklake_query_that_reads_files_is_refused_and_the_lake_reaches_only_its_files(
    tmp_path: Path, secret: Path, store: DuckDBStore
) -> None:
    lake = Lake(tmp_path / "lake")
    lake.create_table("users", USERS, [user("alice-1")])
    store.add_connection(Connection("wh", "ducklake", lake.connection_config()))
    sql = f"SELECT uid AS user_id, (SELECT content FROM read_text('{secret}')) AS p FROM users"
    with pytest.raises(ConfigurationError, match=r"read_text\(\): .* not allowed"):
        resolve_and_add(store, "s", "wh", query=sql, strategy="diff")
    source = DuckLakeWarehouse(store.get_connection("wh"))
    try:
        assert source.con.execute("SELECT count(*) FROM users").fetchone() == (1,)
        with pytest.raises(duckdb.PermissionException, match="disabled by configuration"):
            source.con.execute(f"SELECT content FROM read_text('{secret}')")
        with pytest.raises(duckdb.PermissionException):
            source.con.execute(f"COPY (SELECT 1) TO '{tmp_path / 'out.csv'}'")
        with pytest.raises(duckdb.Error, match="locked"):
            source.con.execute("SET enable_external_access = true")
    finally:
        source.close()
    assert_store_clean(store)


# -- the transform engine (the CDC --query form) ----------------------------------------


def test_the_cdc_query_form_refuses_file_functions(tmp_path: Path, secret: Path) -> None:
    lake = Warehouse(tmp_path / "lake")
    lake.create("prod.users", users_table(3))
    cli = Cli(tmp_path / "home", tmp_path)
    cli.ok("connection", "add", "lake", "--kind", "delta", "--path", str(lake.root))
    before = store_state(cli.home)
    sql = f"SELECT uid AS user_id, (SELECT content FROM read_text('{secret}')) AS p FROM prod.users"
    proc = cli("source", "add", "s", "--connection", "lake", "--query", sql)
    assert_cli_refused(proc, "read_text()", "not allowed")
    assert store_state(cli.home) == before
    assert_secret_absent(cli.home, proc.stdout, proc.stderr)


def test_the_transform_engine_reaches_no_file(secret: Path) -> None:
    """A mapping expression that reads a file (saved by an older release) fails cleanly."""
    reader = pa.RecordBatchReader.from_batches(*_batches(pa.table({"uid": ["alice-1"]})))
    expression = f"(SELECT content FROM read_text('{secret}'))"
    mapping = Mapping("prod.users", quote("uid"), (PropertyMapping("p", expression),), ("uid",))
    with pytest.raises(ConfigurationError) as failed:
        transform(reader, mapping)
    assert "disabled by configuration" in str(failed.value)
    assert MARKER not in str(failed.value)


def _batches(table: pa.Table) -> tuple[pa.Schema, list[pa.RecordBatch]]:
    return table.schema, table.to_batches()


# -- the store's connection (event queries) and the other scratch engines ----------------


def test_the_store_connection_reaches_no_other_file(tmp_path: Path, secret: Path) -> None:
    home = tmp_path / "home"
    with DuckDBStore(home) as store:
        (home / "secret.key").write_text(MARKER)  # where the key sealing secrets lives
        for path in (secret, home / "secret.key"):
            for con in (store.con, store.con.cursor()):
                with pytest.raises(duckdb.PermissionException, match="disabled by configuration"):
                    con.execute(f"SELECT content FROM read_text('{path}')")
        with pytest.raises(duckdb.Error, match="locked"):
            store.con.execute("SET enable_external_access = true")
        with DuckDBStore(home) as second:  # shares the first one's database: locked as well
            with pytest.raises(duckdb.PermissionException):
                second.con.execute(f"SELECT content FROM read_text('{secret}')")
            row = second.con.execute("SELECT current_setting('TimeZone')").fetchone()
            assert row is not None and row[0] in ("UTC", "Etc/UTC")
        store.set_setting("probe", "still writable")
        assert store.get_setting("probe") == "still writable"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    built = build_world(tmp_path)
    try:
        yield built
    finally:
        built.store.close()


def test_segmentation_names_and_values_cannot_inject_sql(world: World, secret: Path) -> None:
    """A regression guard: property names and values are bound or quoted, never spliced."""
    inject = f"x') UNION ALL SELECT content FROM read_text('{secret}') --"
    queries: list[dict[str, Any]] = [
        {"group_by": PropertyRef(kind="profile", name=inject)},
        {"group_by": PropertyRef(kind="event", name=inject)},
        {"filters": [Filter(kind="user", name="plan", op="is", values=[inject])]},
        {"filters": [Filter(kind="event", name=inject, op="contains", values=["'"])]},
    ]
    for extra in queries:
        query = SegmentationQuery(
            events=["Purchase"], start="2024-05-01", end="2024-05-03", **extra
        )
        try:
            answer = json.dumps(segmentation(world.store, query), default=str)
        except ProfilesyncError as exc:
            answer = str(exc)
        assert MARKER not in answer


def test_the_ingest_and_postgres_scratch_engines_reach_no_file(secret: Path) -> None:
    from profilesync.warehouses.postgres.driver import duck as _duck

    for con in (ingest.scratch(), _duck()):
        with pytest.raises(duckdb.PermissionException, match="disabled by configuration"):
            con.execute(f"SELECT content FROM read_text('{secret}')")
