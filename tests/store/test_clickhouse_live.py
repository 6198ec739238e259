"""The store conformance scenarios against a real ClickHouse server (or cluster) over HTTP,
through clickhouse-connect: opt-in, with ``PROFILESYNC_TEST_CLICKHOUSE_URL`` naming the
server as ``--store`` does::

    PROFILESYNC_TEST_CLICKHOUSE_URL=clickhouse://user:password@host:8123/db \\
        pytest tests/store/test_clickhouse_live.py

Each test runs in a database of its own (``<db>_test_<random>``, made and dropped here,
``ON CLUSTER`` for a ``?cluster=NAME`` URL), so the server's user needs CREATE DATABASE
and DROP DATABASE. Without the variable every test is skipped and says how to run it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from profilesync.store import open_store
from profilesync.store.backends import Backend, ServerURL, parse_backend
from profilesync.store.clickhouse import ClickHouseStore
from profilesync.store.clickhouse.driver import HttpDriver, quote_name
from profilesync.store.protocol import Store
from tests.store.test_apply import (  # noqa: F401 - collected here, on the server
    test_a_type_change_converts_stored_values_when_all_convert,
    test_deleting_a_source_removes_its_profiles_and_keeps_its_runs,
    test_inserts_updates_deletes_and_nulls_out,
    test_no_op_updates_are_not_written_nor_metered,
    test_property_statistics_and_removal,
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

URL_ENV = "PROFILESYNC_TEST_CLICKHOUSE_URL"
SKIP = (
    "set PROFILESYNC_TEST_CLICKHOUSE_URL=clickhouse://user@host:8123/db "
    "to run against a ClickHouse server"
)


def server_of(url: str) -> ServerURL:
    server = parse_backend(url).server
    if server is None:
        raise pytest.UsageError(f"{URL_ENV} is not a clickhouse:// URL: {url}")
    return server


def database_ddl(verb: str, server: ServerURL, database: str) -> str:
    """``CREATE DATABASE`` or ``DROP DATABASE`` of ``database``, on every node of a cluster."""
    on_cluster = f" ON CLUSTER {quote_name(server.cluster)}" if server.cluster else ""
    exists = "IF NOT EXISTS" if verb == "CREATE" else "IF EXISTS"
    return f"{verb} DATABASE {exists} {quote_name(database)}{on_cluster}"


@pytest.fixture
def backend() -> Iterator[Backend]:
    """The server of ``PROFILESYNC_TEST_CLICKHOUSE_URL`` with a database of this test's own."""
    url = os.environ.get(URL_ENV)
    if not url:
        pytest.skip(SKIP)
    server = server_of(url)
    database = f"{server.database}_test_{uuid.uuid4().hex[:8]}"
    admin = HttpDriver(server)
    try:
        admin.execute(database_ddl("CREATE", server, database))
        yield Backend("clickhouse", replace(server, database=database))
    finally:
        try:
            admin.execute(database_ddl("DROP", server, database))
        finally:
            admin.close()


@pytest.fixture
def open_home(home: Path, backend: Backend) -> Callable[[], Store]:
    """The conformance suite's stores, on the server."""
    return lambda: open_store(home, backend=backend)


def test_the_store_keeps_its_tables_in_the_database_of_the_url(
    store: Store, backend: Backend
) -> None:
    assert isinstance(store, ClickHouseStore) and isinstance(store.driver, HttpDriver)
    assert store.backend.name == backend.name
    assert store.scalar("SELECT currentDatabase()") == backend.server.database  # type: ignore[union-attr]
    assert "events" in store.tables()
