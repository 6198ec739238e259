"""The ClickHouse server mode, as far as it can be checked without a server: the
``clickhouse://`` URL, what a home records of it, the DDL of a cluster (parsed by sqlglot's
ClickHouse dialect), the same layout without Keeper (``Distributed`` tables over plain
ones on a one-shard cluster) run on chdb through the store conformance scenarios, and the
HTTP driver against a stand-in for clickhouse-connect's client.

Not checked here: a real ClickHouse server or cluster (``ON CLUSTER``, ``Replicated``
engines and Keeper cannot run in chdb).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import sqlglot
from sqlglot import exp

from profilesync.errors import ConfigurationError
from profilesync.model import Connection
from profilesync.store import open_store
from profilesync.store.backends import (
    BACKEND_SETTING,
    SECRET_SETTING,
    choose_backend,
    parse_backend,
    record_backend,
)
from profilesync.store.clickhouse import ClickHouseStore, layout_of
from profilesync.store.clickhouse.cluster import CLUSTER_SETTINGS, REPLICA_PATH, Layout
from profilesync.store.clickhouse.driver import ChdbDriver, Driver, HttpDriver
from profilesync.store.duckdb import DuckDBStore
from profilesync.store.protocol import Store
from tests.store.test_apply import (  # noqa: F401 - collected here, on the cluster layout
    test_a_full_diff_deletes_the_users_it_does_not_hold,
    test_a_type_change_converts_stored_values_when_all_convert,
    test_a_type_change_that_cannot_convert_asks_for_a_resync,
    test_deleting_a_source_removes_its_profiles_and_keeps_its_runs,
    test_inserts_updates_deletes_and_nulls_out,
    test_no_op_updates_are_not_written_nor_metered,
    test_property_statistics_and_removal,
    test_the_quota_refuses_a_sync_before_anything_is_applied,
)
from tests.store.test_atomicity import test_nothing_is_half_applied  # noqa: F401
from tests.store.test_events import (  # noqa: F401
    test_a_failed_batch_stores_nothing,
    test_a_segmentation_joins_events_with_current_profiles,
    test_an_insert_id_is_stored_once_across_batches_and_store_objects,
)
from tests.store.test_segmentation import (  # noqa: F401
    test_an_event_property_reads_the_same_on_every_backend,
)

URL = "clickhouse://analyst:s3cr%40t@ch-1.internal:8123/analytics?cluster=prod"


# -- the URL and the home ----------------------------------------------------------------


def test_a_url_names_the_server_and_never_shows_its_password() -> None:
    server = parse_backend(URL).server
    assert server is not None
    assert (server.host, server.port, server.database, server.cluster) == (
        "ch-1.internal",
        8123,
        "analytics",
        "prod",
    )
    assert (server.user, server.password) == ("analyst", "s3cr@t")
    assert server.name == "clickhouse://analyst@ch-1.internal:8123/analytics?cluster=prod"
    plain = parse_backend("clickhouse://ch.example.com?secure=1").server
    assert plain is not None
    assert (plain.user, plain.port, plain.database, plain.secure) == (
        "default",
        8443,
        "default",
        True,
    )


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("clickhouse:///analytics", "names no host"),
        ("clickhouse://u:pw@h/analytics?shards=2", "unknown option 'shards'"),
        ("clickhouse://u:pw@h/my-db", "the database 'my-db' is not a plain name"),
        ("clickhouse://u:pw@h/db?cluster=a;b", "the cluster 'a;b'"),
        ("clickhouse://u:pw@h:port/db", "store URL"),
        ("postgres://h/db", "unknown store backend"),
    ],
)
def test_a_bad_url_is_refused_without_echoing_the_password(url: str, words: str) -> None:
    with pytest.raises(ConfigurationError, match=words) as refused:
        parse_backend(url)
    assert "pw" not in str(refused.value).replace("postgres", "")


def test_a_home_records_the_server_without_its_password_and_seals_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROFILESYNC_CLICKHOUSE_PASSWORD", raising=False)
    home = tmp_path / "home"
    with DuckDBStore(home) as catalog:
        chosen = choose_backend(catalog, home, parse_backend(URL))
        record_backend(catalog, home, chosen)
        assert catalog.get_setting(BACKEND_SETTING) == chosen.name
        assert "s3cr" not in (catalog.get_setting(SECRET_SETTING) or "")
        # later: no --store, the recorded server with its password
        again = choose_backend(catalog, home, None)
        assert again.server is not None and again.server.password == "s3cr@t"
        other = parse_backend("clickhouse://analyst@ch-2.internal/analytics")
        with pytest.raises(
            ConfigurationError, match="created with --store clickhouse://analyst@ch-1"
        ):
            choose_backend(catalog, home, other)
    # the DuckDB store on such a home is refused, and so is chdb
    with pytest.raises(ConfigurationError, match="not duckdb"):
        DuckDBStore(home)
    with pytest.raises(ConfigurationError, match="not chdb"):
        open_store(home, backend="chdb")


# -- the DDL -------------------------------------------------------------------------------

CLUSTER = Layout(cluster="prod", database="analytics")


def all_ddl(layout: Layout) -> list[str]:
    varchar = "ADD COLUMN `Plan` Nullable(String) COMMENT 'VARCHAR'"
    return [
        *layout.events(),
        *layout.profiles("profiles_1", {"Plan": "VARCHAR", "Score": "DOUBLE"}),
        *layout.like("profiles_1_pending", "profiles_1"),
        *layout.current_view("profiles_1_current", "profiles_1"),
        *layout.alter("profiles_1", varchar),
        *layout.attach("profiles_1", "profiles_1_pending"),
        *layout.exchange("profiles_1_convert", "profiles_1"),
        *layout.delete("events", "batch_id > {b:Int64}"),
        *layout.drop("profiles_1"),
    ]


def parsed(sql: str) -> exp.Expr:
    logging.getLogger("sqlglot").setLevel(logging.ERROR)  # the unsupported ones are Commands
    return sqlglot.parse_one(sql, read="clickhouse")


def test_the_cluster_ddl_parses_as_clickhouse_and_says_on_cluster_everywhere() -> None:
    statements = all_ddl(CLUSTER)
    trees = [parsed(sql) for sql in statements]
    commands = [
        sql.split(" ")[0:3]
        for sql, tree in zip(statements, trees, strict=True)
        if isinstance(tree, exp.Command)
    ]
    # sqlglot keeps these two as commands; the rest it parses into statements and renders back
    assert commands == [
        ["ALTER", "TABLE", "profiles_1_local"],
        ["EXCHANGE", "TABLES", "profiles_1_convert_local"],
    ]
    for tree in trees:
        if not isinstance(tree, exp.Command):
            assert parsed(tree.sql("clickhouse")) == tree
    assert all("ON CLUSTER `prod`" in sql for sql in statements)


def engines(layout: Layout) -> dict[str, str]:
    """Each table the layout creates, with its engine as sqlglot reads it."""
    made: dict[str, str] = {}
    for sql in all_ddl(layout):
        tree = parsed(sql)
        if isinstance(tree, exp.Create) and tree.kind == "TABLE":
            engine = tree.find(exp.EngineProperty)
            assert engine is not None, sql
            table = tree.this.this if isinstance(tree.this, exp.Schema) else tree.this
            made.setdefault(table.name, engine.this.sql("clickhouse"))
    return made


def test_a_cluster_keeps_replicated_tables_with_distributed_tables_over_them() -> None:
    made = engines(CLUSTER)
    path = REPLICA_PATH.replace("'", "").split(", ")[0]
    assert made["events_local"].startswith(f"ReplicatedMergeTree('{path}'")
    assert made["profiles_1_local"].startswith(f"ReplicatedReplacingMergeTree('{path}'")
    assert made["profiles_1_local"].endswith("'{replica}', _version, _is_deleted)")
    assert made["profiles_1_pending_local"] == made["profiles_1_local"]
    # a user's profile rows and events are on one shard
    assert made["events"] == (
        'Distributed("prod", "analytics", events_local, '
        "cityHash64(coalesce(user_id, device_id, '')))"
    )
    for name in ("profiles_1", "profiles_1_pending", "profiles_1_current"):
        assert made[name] == f'Distributed("prod", "analytics", {name}_local, cityHash64(user_id))'
    assert layout_of(parse_backend(URL)) == CLUSTER
    assert CLUSTER_SETTINGS["distributed_foreground_insert"] == "1"


def test_one_server_has_plain_tables_and_no_cluster_clause() -> None:
    made = engines(Layout())
    assert made == {
        "events": "MergeTree()",
        "profiles_1": "ReplacingMergeTree(_version, _is_deleted)",
        "profiles_1_pending": "ReplacingMergeTree(_version, _is_deleted)",
    }
    assert not any("ON CLUSTER" in sql or "_local" in sql for sql in all_ddl(Layout()))
    assert layout_of(parse_backend("clickhouse://h/db")) == Layout()


# -- the cluster layout on chdb: Distributed tables over plain ones, one local shard ------

pytest.importorskip("chdb", reason="needs the clickhouse extra: pip install .[clickhouse]")

ONE_SHARD = """<clickhouse>
  <tcp_port>9000</tcp_port>
  <remote_servers><one_shard><shard><replica>
    <host>localhost</host><port>9000</port>
  </replica></shard></one_shard></remote_servers>
</clickhouse>
"""
WITHOUT_KEEPER = Layout(cluster="one_shard", replicated=False, on_cluster=False)


@pytest.fixture
def backend() -> str:
    return "chdb"


@pytest.fixture
def open_home(home: Path, tmp_path: Path) -> Callable[[], Store]:
    """The conformance suite's stores, on the cluster layout without Keeper."""
    config = tmp_path / "one_shard.xml"
    config.write_text(ONE_SHARD)

    def opened() -> Store:
        options = {"config-file": str(config), **CLUSTER_SETTINGS}
        driver = ChdbDriver(home / "clickhouse", options)
        try:
            return ClickHouseStore(home, layout=WITHOUT_KEEPER, driver=driver)
        except BaseException:
            driver.close()
            raise

    return opened


def test_the_tables_are_distributed_over_local_ones(store: Store) -> None:
    assert isinstance(store, ClickHouseStore)
    store.add_connection(Connection("other", "delta", {"path": "x"}))
    shards = store.driver.query_arrow("SELECT cluster, is_local FROM system.clusters").to_pylist()
    assert shards == [{"cluster": "one_shard", "is_local": 1}]
    from tests.store.conftest import apply, net

    apply(store, net({"u-0001": ("a", 1.0)}))
    listed = store.driver.query_arrow(
        "SELECT name, engine FROM system.tables WHERE database = currentDatabase() ORDER BY name"
    ).to_pylist()
    assert {(t["name"], t["engine"]) for t in listed} == {
        ("events", "Distributed"),
        ("events_local", "MergeTree"),
        ("profiles_1", "Distributed"),
        ("profiles_1_local", "ReplacingMergeTree"),
        ("profiles_1_current", "Distributed"),
        ("profiles_1_current_local", "View"),
    }


# -- the HTTP driver against a stand-in client ------------------------------------------


class FakeClient:
    """Records what the driver asks of clickhouse-connect's client and answers in kind."""

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.calls: list[tuple[str, Any, Any]] = []
        self.inserted: list[tuple[str, pa.Table]] = []
        self.closed = False

    def command(self, sql: str, parameters: dict[str, Any]) -> None:
        self.calls.append(("command", sql, parameters))
        if "broken" in sql:
            from clickhouse_connect.driver.exceptions import DatabaseError

            raise DatabaseError("Code: 60. DB::Exception: Unknown table broken (UNKNOWN_TABLE)")

    def query_arrow(self, sql: str, parameters: dict[str, Any], use_strings: bool) -> pa.Table:
        self.calls.append(("query_arrow", sql, parameters))
        return pa.table({"n": [1, 2]})

    def query_arrow_stream(
        self, sql: str, parameters: dict[str, Any], settings: dict[str, Any], use_strings: bool
    ) -> Any:
        self.calls.append(("stream", sql, settings))
        batches = pa.table({"n": list(range(5))}).to_batches(max_chunksize=2)

        class Stream:
            closed = False

            def __enter__(self) -> Iterator[pa.RecordBatch]:
                return iter(batches)

            def __exit__(self, *exc: object) -> None:
                Stream.closed = True

        self.stream = Stream
        return Stream()

    def insert_arrow(self, table: str, rows: pa.Table) -> None:
        self.inserted.append((table, rows))

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> list[FakeClient]:
    import clickhouse_connect

    made: list[FakeClient] = []

    def get_client(**options: Any) -> FakeClient:
        made.append(FakeClient(**options))
        return made[-1]

    monkeypatch.setattr(clickhouse_connect, "get_client", get_client)
    return made


def test_the_http_driver_carries_statements_results_and_batches(fake: list[FakeClient]) -> None:
    server = parse_backend(URL).server
    assert server is not None
    driver: Driver = HttpDriver(server, CLUSTER_SETTINGS)
    client = fake[0]
    assert {k: client.options[k] for k in ("host", "port", "username", "password", "database")} == {
        "host": "ch-1.internal", "port": 8123, "username": "analyst", "password": "s3cr@t",
        "database": "analytics",
    }  # fmt: skip
    settings = client.options["settings"]
    assert (
        settings["session_timezone"] == "UTC" and settings["distributed_foreground_insert"] == "1"
    )
    driver.execute("DELETE FROM events WHERE batch_id > {b:Int64}", {"b": 3})
    assert client.calls[-1] == (
        "command",
        "DELETE FROM events WHERE batch_id > {b:Int64}",
        {"b": 3},
    )
    assert driver.query_arrow("SELECT 1").column("n").to_pylist() == [1, 2]
    stream = driver.stream_arrow("SELECT n", rows=2)
    assert stream.read_all().column("n").to_pylist() == [0, 1, 2, 3, 4]
    assert client.stream.closed and client.calls[-1][2] == {"max_block_size": 2}
    rows = pa.table({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    assert driver.insert_arrow("t", ["user_id", "Plan"], rows.to_reader(max_chunksize=1)) == 3
    assert [(t, r.column_names, r.num_rows) for t, r in client.inserted] == [
        ("t", ["user_id", "Plan"], 3)
    ]
    with pytest.raises(RuntimeError, match="UNKNOWN_TABLE"):  # as chdb raises it
        driver.execute("DROP TABLE broken")
    other = driver.connect()
    assert len(fake) == 2 and other is not driver
    driver.close()
    assert client.closed


def test_an_unreachable_server_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import clickhouse_connect

    def refuse(**options: Any) -> None:
        raise OSError("Connection refused\nmore detail")

    monkeypatch.setattr(clickhouse_connect, "get_client", refuse)
    server = parse_backend(URL).server
    assert server is not None
    with pytest.raises(ConfigurationError) as refused:
        HttpDriver(server)
    assert str(refused.value) == (
        "cannot reach the ClickHouse server "
        "clickhouse://analyst@ch-1.internal:8123/analytics?cluster=prod: Connection refused"
    )
