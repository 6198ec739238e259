"""Crash safety of events: a killed server or import loses no acknowledged event and stores none twice.

- ``profilesync serve`` is killed with SIGKILL while four clients are sending batches;
  after a restart every batch answered 200 is stored exactly once, and clients retrying
  the batches they got no answer for (same ``insert_id`` s) leave each event once.
- ``profilesync events import`` is killed inside its transaction
  (``PROFILESYNC_FAULT=import_chunk`` or ``import_before_commit``): nothing of the file
  is stored, and the rerun imports every row exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from profilesync.events import projects as event_store
from profilesync.store import DuckDBStore
from tests.conftest import Cli
from tests.events.conftest import ms
from tests.events.test_ingest import start_server

CLIENTS = 4
BATCH = 250


def batch(key: str, client: int, n: int) -> dict[str, Any]:
    return {
        "api_key": key,
        "events": [
            {
                "event_type": "View",
                "user_id": f"user-{client}-{n}-{i}",
                "time": ms(1),
                "insert_id": f"c{client}-b{n}-{i}",
            }
            for i in range(BATCH)
        ],
    }


def stored_ids(home: Path) -> tuple[int, set[str]]:
    with DuckDBStore(home) as store:
        ids = [r[0] for r in store.con.execute("SELECT insert_id FROM events").fetchall()]
    return len(ids), set(ids)


def make_project(home: Path) -> str:
    with DuckDBStore(home) as store:
        return event_store.create_project(store, "web")[1]


@pytest.mark.slow
def test_a_server_killed_mid_requests_keeps_every_acknowledged_batch_once(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    key = make_project(home)
    proc, url = start_server(home)
    acked: list[tuple[int, int]] = []
    unanswered: list[tuple[int, int]] = []
    stop = threading.Event()

    def client(c: int) -> None:
        with httpx.Client(timeout=20) as http:
            for n in range(10_000):
                try:
                    resp = http.post(f"{url}/2/httpapi", json=batch(key, c, n))
                except httpx.HTTPError:
                    unanswered.append((c, n))
                    return  # the server is gone
                (acked if resp.status_code == 200 else unanswered).append((c, n))
                if stop.is_set():
                    return

    threads = [threading.Thread(target=client, args=(c,)) for c in range(CLIENTS)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(acked) < 8 and time.monotonic() < deadline:  # let them get going
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # mid-request: no shutdown, no checkpoint
    proc.wait()
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert len(acked) >= 8 and unanswered, (len(acked), unanswered)

    count, ids = stored_ids(home)
    assert count == len(ids)  # nothing twice
    for c, n in acked:
        assert {e["insert_id"] for e in batch(key, c, n)["events"]} <= ids

    proc, url = start_server(home)
    try:
        with httpx.Client(timeout=30) as http:
            for c, n in unanswered:  # the clients retry what they heard nothing back for
                assert http.post(f"{url}/2/httpapi", json=batch(key, c, n)).status_code == 200
            for c, n in acked[:4]:  # and a retry of an acknowledged batch stores nothing
                again = http.post(f"{url}/2/httpapi", json=batch(key, c, n)).json()
                assert again["events_deduplicated"] == BATCH
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    count, ids = stored_ids(home)
    assert count == len(ids) == BATCH * (len(acked) + len(unanswered))


ROWS = 20_000


def write_events(path: Path) -> None:
    rows = [
        {"event_type": "Open", "user_id": f"user-{i:06d}", "time": ms(2), "insert_id": f"i-{i}"}
        for i in range(ROWS)
    ]
    if path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=5_000)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.mark.parametrize("point", ["import_chunk", "import_before_commit"])
@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_a_killed_import_stores_nothing_and_the_rerun_everything_once(
    tmp_path: Path, cli: Cli, point: str, suffix: str
) -> None:
    home = tmp_path / "home"
    make_project(home)
    path = tmp_path / f"events{suffix}"
    write_events(path)
    killed = cli("events", "import", str(path), "--json", env={"PROFILESYNC_FAULT": point})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert stored_ids(home) == (0, set())

    first = cli.json("events", "import", str(path))
    assert (first["imported"], first["duplicates"], first["rejected"]) == (ROWS, 0, 0)
    count, ids = stored_ids(home)
    assert count == len(ids) == ROWS
    again = cli.json("events", "import", str(path))
    assert (again["imported"], again["duplicates"]) == (0, ROWS)
    assert stored_ids(home)[0] == ROWS
