"""``events import``: JSON Lines, CSV and Parquet, each with a bad row rejected with its reason."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from profilesync.errors import ConfigurationError
from profilesync.events import importer, ingest
from profilesync.events import projects as event_store
from profilesync.store import DuckDBStore
from tests.events.conftest import ms

GOOD = [
    {
        "event_type": "Purchase",
        "user_id": "user-00001",
        "time": ms(1),
        "insert_id": "p-1",
        "event_properties": {"amount": 12.5, "sku": "A"},
        "user_properties": {"plan": "free"},
        "platform": "iOS",
    },
    {"event_type": "View", "device_id": "device-0002", "time": ms(2), "insert_id": "v-2"},
    {"event_type": "View", "user_id": 123456, "time": "2024-05-03T08:30:00Z"},
]


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with DuckDBStore(tmp_path / "home") as s:
        event_store.create_project(s, "web")
        yield s


def events(store: DuckDBStore) -> list[tuple[Any, ...]]:
    return store.con.execute(
        'SELECT event_type, user_id, device_id, "time", event_properties, user_properties, '
        'insert_id, platform FROM events ORDER BY "time"'
    ).fetchall()


def check_good_rows(store: DuckDBStore) -> None:
    rows = events(store)
    assert [r[:3] for r in rows] == [
        ("Purchase", "user-00001", None),
        ("View", None, "device-0002"),
        ("View", "123456", None),
    ]
    assert json.loads(rows[0][4]) == {"amount": 12.5, "sku": "A"}
    assert json.loads(rows[0][5]) == {"plan": "free"}
    assert rows[0][7] == "iOS"
    assert str(rows[2][3]) == "2024-05-03 08:30:00"


def test_json_lines(tmp_path: Path, store: DuckDBStore) -> None:
    path = tmp_path / "events.jsonl"
    lines = [json.dumps(GOOD[0]), json.dumps(GOOD[1]), "", "{broken", json.dumps(GOOD[2])]
    lines.append(json.dumps({"event_type": "View", "user_id": "abc", "time": ms(1)}))
    path.write_text("\n".join(lines) + "\n")
    result = importer.import_file(store, path)
    assert (result.imported, result.rejected, result.format) == (3, 2, "jsonl")
    assert result.rejected_rows == [
        {"line": 4, "reasons": ["the line is not valid JSON"]},
        {"line": 6, "reasons": ["user_id is shorter than 5 characters"]},
    ]
    check_good_rows(store)


def test_csv_with_json_text_columns(tmp_path: Path, store: DuckDBStore) -> None:
    path = tmp_path / "events.csv"
    header = [
        "event_type",
        "user_id",
        "device_id",
        "time",
        "event_properties",
        "user_properties",
        "insert_id",
        "platform",
        "extra",
    ]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for e in GOOD:
            w.writerow(
                [
                    e["event_type"],
                    e.get("user_id", ""),
                    e.get("device_id", ""),
                    e["time"],
                    json.dumps(e["event_properties"]) if "event_properties" in e else "",
                    json.dumps(e["user_properties"]) if "user_properties" in e else "",
                    e.get("insert_id", ""),
                    e.get("platform", ""),
                    "ignored",
                ]
            )
        w.writerow(["View", "user-00004", "", "next tuesday", "", "", "", "", ""])
    result = importer.import_file(store, path)
    assert (result.imported, result.rejected) == (3, 1)
    assert result.rejected_rows == [
        {
            "row": 4,
            "reasons": ["time must be milliseconds since the epoch (or an ISO 8601 timestamp)"],
        }
    ]
    assert result.ignored_columns == ["extra"]
    check_good_rows(store)


def test_csv_malformed_record_is_rejected(tmp_path: Path, store: DuckDBStore) -> None:
    path = tmp_path / "events.csv"
    path.write_text(f"event_type,user_id,time\nView,user-00001,{ms(1)}\nView,user-00002\n")
    result = importer.import_file(store, path)
    assert (result.imported, result.rejected) == (1, 1)
    assert "2 columns instead of 3" in result.rejected_rows[0]["reasons"][0]


def test_parquet_with_typed_columns(tmp_path: Path, store: DuckDBStore) -> None:
    path = tmp_path / "events.parquet"
    table = pa.table(
        {
            "event_type": ["Purchase", "View", "View", None],
            "user_id": ["user-00001", None, "123456", "user-00004"],
            "device_id": [None, "device-0002", None, None],
            "time": pa.array(
                [ms(1) * 1000, ms(2) * 1000, ms(3, 8) * 1000 + 1_800_000_000, ms(1) * 1000],
                pa.timestamp("us", tz="UTC"),
            ),
            "event_properties": pa.array(
                [{"amount": 12.5, "sku": "A"}, None, None, None],
                pa.struct([("amount", pa.float64()), ("sku", pa.string())]),
            ),
            "user_properties": ['{"plan": "free"}', None, None, None],
            "insert_id": ["p-1", "v-2", None, None],
            "platform": ["iOS", None, None, None],
        }
    )
    pq.write_table(table, path)
    result = importer.import_file(store, path)
    assert (result.imported, result.rejected) == (3, 1)
    assert result.rejected_rows == [{"row": 4, "reasons": ["event_type is missing"]}]
    rows = events(store)
    assert json.loads(rows[0][4]) == {"amount": 12.5, "sku": "A"}
    check_good_rows(store)


def test_importing_twice_keeps_events_with_insert_ids_once(
    tmp_path: Path, store: DuckDBStore
) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in GOOD) + "\n")
    first = importer.import_file(store, path)
    second = importer.import_file(store, path)
    assert (first.imported, first.duplicates) == (3, 0)
    # the two rows with an insert_id are ignored; the one without is stored again
    assert (second.imported, second.duplicates) == (1, 2)
    assert store.con.execute("SELECT count(*) FROM events").fetchone() == (4,)


def test_import_needs_a_known_project_and_format(tmp_path: Path, store: DuckDBStore) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(GOOD[0]) + "\n")
    event_store.create_project(store, "ios")
    with pytest.raises(ConfigurationError, match="several projects"):
        importer.import_file(store, path)
    with pytest.raises(ConfigurationError, match="format"):
        importer.import_file(store, path, project="web", fmt="xml")
    assert store.con.execute("SELECT count(*) FROM events").fetchone() == (0,)


def test_an_import_that_fails_midway_stores_nothing(
    tmp_path: Path, store: DuckDBStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "BLOCK_BYTES", 1024)
    path = tmp_path / "events.jsonl"
    rows = [
        {"event_type": "View", "user_id": f"user-{i:05d}", "insert_id": f"id-{i}"}
        for i in range(200)
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    append, calls = ingest.Writer.append, []

    def failing(self: ingest.Writer, batch: ingest.Prepared) -> ingest.Appended:
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return append(self, batch)

    monkeypatch.setattr(ingest.Writer, "append", failing)
    with pytest.raises(OSError):
        importer.import_file(store, path)
    assert store.con.execute("SELECT count(*) FROM events").fetchone() == (0,)
    monkeypatch.setattr(ingest.Writer, "append", append)
    # the ids of the rolled back chunks were not remembered: all 200 are new
    assert importer.import_file(store, path).imported == 200


def test_large_jsonl_in_several_blocks(
    tmp_path: Path, store: DuckDBStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "BLOCK_BYTES", 4096)
    path = tmp_path / "events.jsonl"
    n = 5000
    with path.open("w") as f:
        for i in range(n):
            f.write(
                json.dumps(
                    {
                        "event_type": "View",
                        "user_id": f"user-{i:05d}",
                        "time": ms(1),
                        "insert_id": f"id-{i % 4000}",
                    }
                )
                + "\n"
            )
    seen: list[tuple[int, int]] = []
    result = importer.import_file(
        store, path, progress=lambda done, total: seen.append((done, total))
    )
    assert (result.rows, result.imported, result.duplicates) == (n, 4000, 1000)
    assert seen[-1][0] == seen[-1][1] == path.stat().st_size
    assert len(seen) > 10
