"""The events JSON API and pages on a real server, over the fixed world of ``conftest.py``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.events.conftest import PASSWORD, Served, build_world, serving

QUERY = {
    "events": ["Purchase"],
    "start": "2024-05-01",
    "end": "2024-05-03",
    "group_by": {"kind": "profile", "name": "Plan"},
    "filters": [{"kind": "profile", "name": "Country", "op": "is", "values": ["US", "DE"]}],
}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    build_world(tmp_path).store.close()
    with serving(tmp_path / "home") as s:
        yield s


def test_segmentation_json_in_series_out(served: Served) -> None:
    resp = served.api.post("/api/query/segmentation", json=QUERY)
    assert resp.status_code == 200, resp.text
    result = resp.json()
    assert result["buckets"][0] == "2024-05-01T00:00:00Z"
    assert {s["label"]: s["values"] for s in result["series"]} == {
        "pro": [2, 1, 0],
        "enterprise": [0, 1, 0],
    }


def test_segmentation_refusals(served: Served) -> None:
    assert served.anon.post("/api/query/segmentation", json=QUERY).status_code == 401
    bad = served.api.post("/api/query/segmentation", json={**QUERY, "interval": "fortnight"})
    assert bad.status_code == 422
    unknown = served.api.post(
        "/api/query/segmentation", json={**QUERY, "group_by": {"kind": "profile", "name": "Tier"}}
    )
    assert unknown.status_code == 404
    assert "Country, Plan" in unknown.json()["message"]


def test_known_and_user_lookup(served: Served) -> None:
    known = served.api.get("/api/events/known").json()
    assert [t["name"] for t in known["event_types"]] == ["Purchase", "View"]
    assert [p["name"] for p in known["properties"]["profile"]] == ["Country", "Plan"]
    user = served.api.get("/api/users/user-0002", params={"limit": 2}).json()
    assert user["profile"]["properties"]["Plan"] == "pro"
    assert user["event_count"] == 3 and len(user["events"]) == 2
    assert served.api.get("/api/users/nobody-here").status_code == 404
    assert served.anon.get("/api/users/user-0002").status_code == 401


def test_projects_are_managed_and_keys_never_listed(served: Served) -> None:
    made = served.api.post("/api/projects", json={"name": "ios"})
    assert made.status_code == 201
    key = made.json()["api_key"]
    listed = served.api.get("/api/projects").json()
    assert [p["name"] for p in listed] == ["ios", "web"]
    assert key not in served.api.get("/api/projects").text
    assert served.api.post("/api/projects", json={"name": "ios"}).status_code == 422
    sent = served.anon.post(
        "/2/httpapi",
        json={"api_key": key, "events": [{"event_type": "Open", "user_id": "user-0001"}]},
    )
    assert sent.status_code == 200
    gone = served.api.delete("/api/projects/ios").json()
    assert gone == {"deleted": "ios", "events_deleted": 1}
    refused = served.anon.post("/2/httpapi", json={"api_key": key, "events": []})
    assert refused.status_code == 400 and refused.json()["error"].startswith("Invalid API key")
    assert served.anon.get("/api/projects").status_code == 401


def test_pages_need_a_login_and_render(served: Served) -> None:
    assert served.anon.get("/segmentation").status_code == 303
    ui = served.anon
    ui.post("/login", data={"username": "admin", "password": PASSWORD, "next": "/"})
    page = ui.get(
        "/segmentation",
        params={
            "event": "Purchase",
            "group_by": "profile:Plan",
            "start": "2024-05-01",
            "end": "2024-05-03",
        },
    )
    assert page.status_code == 200
    assert 'data-series="pro"' in page.text and "chart.umd.min.js" in page.text
    assert 'href="/segmentation"' in page.text  # in the navigation
    bad = ui.get("/segmentation", params={"event": "Purchase", "metric": "sum"})
    assert "needs a property" in bad.text
    user = ui.get("/users", params={"user_id": "user-0002"})
    assert 'data-property="Plan">pro' in user.text
    assert "Purchase" in user.text
    assert "no profile and no events" in ui.get("/users", params={"user_id": "nobody-here"}).text
    assert ui.get("/static/vendor/chart.umd.min.js").status_code == 200
