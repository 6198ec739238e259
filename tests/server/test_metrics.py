"""``GET /metrics`` as Prometheus scrapes it: a real server, syncs of a real Delta table,
events sent over HTTP, the answer parsed with prometheus_client's own parser."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Warehouse
from tests.server.conftest import Served, people, serving

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(served: Served) -> Samples:
    resp = served.api.get("/metrics")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(resp.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def _sync(served: Served) -> httpx.Response:
    return served.api.post("/api/sources/users/sync", params={"wait": "true"})


def _events(served: Served) -> str:
    key = served.api.post("/api/projects", json={"name": "web"}).json()["api_key"]

    def view(n: int) -> dict[str, object]:
        return {
            "event_type": "View",
            "device_id": "device-0001",
            "insert_id": f"view-{n}",
            "time": 1_714_564_800_000 + n,
        }

    first = httpx.post(f"{served.url}/2/httpapi", json={"api_key": key, "events": [view(1)]})
    assert first.json()["events_deduplicated"] == 0
    # the client retries the first event with a new one: the retry is dropped
    again = {"api_key": key, "events": [view(1), view(2)]}
    second = httpx.post(f"{served.url}/2/httpapi", json=again)
    assert second.json()["events_deduplicated"] == 1
    return key


def test_metrics_count_syncs_rows_durations_quota_and_events(tmp_path: Path) -> None:
    lake = Warehouse(tmp_path / "lake")
    lake.create("prod.users", people([10001, 10002, 10003, 123], ["A", "B", "C", "D"]))
    home = tmp_path / "home"
    with serving(home) as served:
        assert httpx.get(f"{served.url}/metrics").status_code == 401
        wrong = {"Authorization": "Bearer ps_not-the-token"}
        assert httpx.get(f"{served.url}/metrics", headers=wrong).status_code == 401

        api = served.api
        config = {"path": str(lake.root)}
        api.post("/api/connections", json={"name": "lake", "kind": "delta", "config": config})
        body = {
            "name": "users",
            "connection": "lake",
            "table": "prod.users",
            "user_id": "uid",
            "properties": [{"column": "title", "name": "Title"}],
        }
        assert api.post("/api/sources", json=body).status_code == 201
        before = scrape(served)
        assert value(before, "profilesync_syncs_total", source="users", status="success") == 0
        assert (
            "profilesync_seconds_since_last_success",
            frozenset({("source", "users")}),
        ) not in before

        assert _sync(served).json()["inserted"] == 3  # 123 is rejected: too short
        lake.update("prod.users", "uid = 10001", {"title": "'Lead'"})
        assert _sync(served).json()["updated"] == 1
        shutil.rmtree(lake.path("prod.users"))  # the table is gone: the next run fails
        assert _sync(served).status_code >= 400
        _events(served)

        samples = scrape(served)
        assert value(samples, "profilesync_syncs_total", source="users", status="success") == 2
        assert value(samples, "profilesync_syncs_total", source="users", status="failed") == 1
        assert value(samples, "profilesync_rows_total", source="users", kind="inserted") == 3
        assert value(samples, "profilesync_rows_total", source="users", kind="updated") == 1
        assert value(samples, "profilesync_rows_total", source="users", kind="deleted") == 0
        assert value(samples, "profilesync_rows_total", source="users", kind="rejected") == 1
        assert value(samples, "profilesync_operations_total", source="users") == 4
        # every run took under a second here: all three in every bucket
        histogram = "profilesync_sync_duration_seconds"
        for bound in ("1.0", "60.0", "3600.0", "+Inf"):
            assert value(samples, f"{histogram}_bucket", source="users", le=bound) == 3
        assert value(samples, f"{histogram}_count", source="users") == 3
        assert 0 < value(samples, f"{histogram}_sum", source="users") < 30
        since = value(samples, "profilesync_seconds_since_last_success", source="users")
        assert 0 <= since < 60
        state = {
            labels: v for (name, labels), v in samples.items() if name == "profilesync_source_state"
        }
        assert sum(state.values()) == 1  # one state at a time
        assert value(samples, "profilesync_quota_operations_used") == 4
        assert value(samples, "profilesync_quota_operations_limit") == 300_000_000
        assert value(samples, "profilesync_events_ingested_total", project="web") == 2
        assert value(samples, "profilesync_events_deduplicated_total", project="web") == 1
        assert value(samples, "process_resident_memory_bytes") > 0

    # the store's figures survive a restart; the duplicates are counted since the start
    with serving(home) as again:
        samples = scrape(again)
        assert value(samples, "profilesync_syncs_total", source="users", status="success") == 2
        assert value(samples, "profilesync_sync_duration_seconds_count", source="users") == 3
        assert value(samples, "profilesync_events_ingested_total", project="web") == 2
        assert value(samples, "profilesync_events_deduplicated_total", project="web") == 0
