"""The store conformance suite: every backend answers the same scenarios.

Tests speak to stores only through :class:`profilesync.store.protocol.Store` (opened with
:func:`profilesync.store.open_store`), never through a backend's connection, so a new
backend joins by adding its name to :data:`BACKENDS`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from profilesync.engine.quota import Quota
from profilesync.mapping import from_columns
from profilesync.model import Checkpoint, Connection, Source, SyncResult, now
from profilesync.store import open_store
from profilesync.store.protocol import DELETED, Store

#: every store backend the suite runs against (chdb when the clickhouse extra is installed)
BACKENDS = ["duckdb", "chdb"]
PROPS = [("title", "Title"), ("score", "Score")]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "chdb":
        pytest.importorskip("chdb", reason="needs the clickhouse extra: pip install .[clickhouse]")
    return str(request.param)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def open_home(home: Path, backend: str) -> Callable[[], Store]:
    """Opens another store object on the same home (a restart, or a second process)."""
    return lambda: open_store(home, backend=backend)


@pytest.fixture
def store(open_home: Callable[[], Store]) -> Iterator[Store]:
    with open_home() as opened:
        opened.add_connection(Connection("lake", "delta", {"path": "warehouse"}))
        opened.add_source(Source("users", "lake", from_columns("prod.users", "uid", PROPS)))
        yield opened


@dataclass
class Net:
    """Changes as the engine hands them to a store (see profilesync.store.protocol.NetChanges):
    a stream of small batches, read once; ``compacted=False`` is a snapshot as read, where a
    user may come on several rows."""

    net: pa.Table
    rejected_rows: pa.Table = field(
        default_factory=lambda: pa.table(
            {"reason": pa.array([], pa.string()), "row": pa.array([], pa.string())}
        )
    )
    compacted: bool = True
    taken: bool = False

    @property
    def read(self) -> int:
        return self.net.num_rows + self.rejected_count

    @property
    def rejected_count(self) -> int:
        return self.rejected_rows.num_rows

    def rejected(self) -> pa.Table:
        return self.rejected_rows

    def files(self) -> tuple[str, ...]:
        return ()  # the stream only: the engine's files are covered by the sync tests

    def rows(self) -> pa.RecordBatchReader:
        assert not self.taken, "a store reads the stream once"
        self.taken = True
        return pa.RecordBatchReader.from_batches(self.net.schema, self.net.to_batches(2))


def net(
    rows: dict[str, tuple[Any, Any]] | None = None,
    deleted: list[str] | None = None,
    *,
    types: tuple[pa.DataType, pa.DataType] = (pa.string(), pa.float64()),
    rejected: list[tuple[str, dict[str, Any]]] | None = None,
) -> Net:
    """``rows``: user_id -> (Title, Score); ``deleted``: user ids to delete."""
    rows, deleted = rows or {}, deleted or []
    ids = list(rows) + deleted
    table = pa.table(
        {
            "user_id": pa.array(ids, pa.string()),
            DELETED: pa.array([False] * len(rows) + [True] * len(deleted), pa.bool_()),
            "Title": pa.array([r[0] for r in rows.values()] + [None] * len(deleted), types[0]),
            "Score": pa.array([r[1] for r in rows.values()] + [None] * len(deleted), types[1]),
        }
    )
    if rejected is None:
        return Net(table)
    return Net(
        table,
        pa.table(
            {
                "reason": pa.array([r for r, _ in rejected], pa.string()),
                "row": pa.array([json.dumps(row) for _, row in rejected], pa.string()),
            }
        ),
    )


def apply(
    store: Store,
    changes: Net,
    *,
    position: str = "1",
    full: bool = False,
    quota: Quota | None = None,
) -> SyncResult:
    """What the engine does after reading: hand the changes and the next checkpoint over."""
    source = store.get_source("users")
    result = SyncResult(source="users", started_at=now(), read=changes.net.num_rows)
    return store.apply(
        source,
        changes,
        Checkpoint(position, "table-1"),
        result,
        full=full,
        quota=quota or store.quota(),
    )


def profiles(store: Store) -> dict[str, dict[str, Any]]:
    return {p["user_id"]: p["properties"] for p in store.export_profiles()}
