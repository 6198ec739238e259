"""A store file written by an older profilesync opens, migrates and syncs on.

``fixtures/store-v1.tar.gz`` was written by profilesync 0.1 (schema version 1, see
``fixtures/make_store_v1.py``): a Delta source synced twice and three events.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pytest
import sqlglot
from deltalake import DeltaTable, write_deltalake

from profilesync.engine import sync as engine
from profilesync.errors import ConfigurationError
from profilesync.events import ingest
from profilesync.store import open_store
from profilesync.store.duckdb import SCHEMA_VERSION
from tests.store.fixtures.make_store_v1 import API_KEY

FIXTURE = Path(__file__).parent / "fixtures" / "store-v1.tar.gz"


@pytest.fixture
def v1_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The version 1 home and its warehouse, unpacked; the connection's path is relative."""
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(tmp_path, filter="data")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


def profiles(home: Path) -> dict[str, dict[str, object]]:
    with open_store(home) as store:
        return {p["user_id"]: p["properties"] for p in store.export_profiles()}


def test_a_version_1_file_is_migrated_and_keeps_its_history(v1_home: Path) -> None:
    with open_store(v1_home) as store:
        assert store.get_setting("schema_version") == str(SCHEMA_VERSION)
        runs = store.runs("users")
        assert [(r["id"], r["mode"], r["inserted"], r["updated"], r["deleted"]) for r in runs] == [
            (2, "incremental", 0, 1, 1),
            (1, "initial", 5, 0, 0),
        ]
        assert [r["peak_memory_bytes"] for r in runs] == [None, None]  # not measured then
        # usage() counts this month only: the fixture's days are older than that
        assert store.read(sqlglot.parse_one("SELECT sum(operations) FROM usage")) == [(7,)]
        assert [p.name for p in store.events.list_projects()] == ["web"]
        assert store.events.catalog(None) == []  # the fixture's events have no properties
    assert profiles(v1_home)["10002"] == {"Title": "boss", "Score": 100.02}
    assert "10005" not in profiles(v1_home)


def test_a_migrated_file_syncs_on(v1_home: Path) -> None:
    table = str(v1_home.parent / "warehouse" / "prod" / "users")
    write_deltalake(
        table,
        pa.table({"uid": pa.array([10_006], pa.int64()), "title": ["new"], "score": [1.5]}),
        mode="append",
    )
    DeltaTable(table).update(predicate="uid = 10001", updates={"title": "'chief'"})
    DeltaTable(table).delete("uid = 10003")
    with open_store(v1_home) as store:
        result = engine.sync(store, "users")
        assert (result.mode, result.inserted, result.updated, result.deleted) == (
            "incremental",
            1,
            1,
            1,
        )
        assert [r["id"] for r in store.runs("users")] == [3, 2, 1]
    assert profiles(v1_home) == {
        "10001": {"Title": "chief", "Score": 100.01},
        "10002": {"Title": "boss", "Score": 100.02},
        "10004": {"Title": "title-10004", "Score": 100.04},
        "10006": {"Title": "new", "Score": 1.5},
    }


def test_events_of_a_migrated_file_keep_their_key_and_their_ids(v1_home: Path) -> None:
    body = {
        "api_key": API_KEY,
        "events": [
            {"event_type": "View", "user_id": "10001", "insert_id": "v1-0", "time": 1700000000000},
            {"event_type": "View", "user_id": "10004", "insert_id": "v2-0", "time": 1700000000000},
        ],
    }
    with open_store(v1_home) as store:
        answer = ingest.ingest(store, json.dumps(body).encode())
    assert (answer["events_ingested"], answer["events_deduplicated"]) == (2, 1)


def test_a_file_from_a_newer_profilesync_is_refused(v1_home: Path) -> None:
    with open_store(v1_home) as store:
        store.set_setting("schema_version", "99")
    with pytest.raises(ConfigurationError, match=r"schema version 99.*Upgrade profilesync"):
        open_store(v1_home)
    with pytest.raises(ConfigurationError, match="schema version 99"):
        open_store(v1_home)  # the refusal changed nothing: still refused
