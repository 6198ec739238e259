"""The REST API over real HTTP: every endpoint, its refusals, and secrets never echoed."""

from __future__ import annotations

import json
import stat
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from profilesync.store.duckdb import DuckDBStore
from profilesync.sync import engine
from tests.conftest import Warehouse
from tests.server.conftest import Served, people, serving

PARAMS = {"name": "x", "table": "t", "run_id": "1", "user_id": "12345"}


def api_routes(app: Any) -> list[tuple[str, str]]:
    """Every documented ``/api`` operation, path parameters filled in."""
    out = []
    for path, operations in app.openapi()["paths"].items():
        if path.startswith("/api"):
            for key, value in PARAMS.items():
                path = path.replace("{" + key + "}", value)
            out.extend((method.upper(), path) for method in operations)
    return out


def test_health_is_open_and_every_other_endpoint_needs_the_token(served: Served) -> None:
    anonymous = httpx.Client(base_url=served.url, follow_redirects=False)
    request_cleanup = anonymous.close
    assert anonymous.get("/health").json() == {"status": "ok"}
    routes = api_routes(served.app)
    assert len(routes) >= 25
    for method, path in routes:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            resp = anonymous.request(method, path, headers=headers)
            assert resp.status_code == 401, (method, path, resp.text)
            assert resp.json()["code"] == "unauthorized"
            assert "Bearer" in resp.headers["www-authenticate"]
    assert anonymous.get("/openapi.json").status_code == 401
    # pages send a person to the login form and back
    for page in ("/", "/sources/new", "/profiles", "/properties", "/usage", "/docs"):
        resp = anonymous.get(page)
        assert resp.status_code == 303
        assert resp.headers["location"].startswith("/login?next=")
    # a session cookie from another site does not open the API
    cross = served.ui.post("/api/sources/x/pause", headers={"Origin": "http://evil.example"})
    assert cross.status_code == 403
    assert cross.json()["code"] == "forbidden"
    form = served.ui.post("/sources/x/pause", headers={"Origin": "http://evil.example"})
    assert form.status_code == 403
    request_cleanup()


def test_login_form(served: Served) -> None:
    client = httpx.Client(base_url=served.url, follow_redirects=False)
    wrong = client.post("/login", data={"username": "admin", "password": "nope", "next": "/"})
    assert wrong.status_code == 401 and "Wrong user name or password" in wrong.text
    ok = client.post(
        "/login", data={"username": "admin", "password": "correct-horse-battery", "next": "/usage"}
    )
    assert ok.status_code == 303 and ok.headers["location"] == "/usage"
    assert client.get("/usage").status_code == 200
    # an open redirect to another site is not followed
    other = client.post(
        "/login",
        data={"username": "admin", "password": "correct-horse-battery", "next": "//evil.example"},
    )
    assert other.headers["location"] == "/"
    client.post("/logout")
    assert client.get("/usage").status_code == 303
    client.close()


def test_docs_page_is_offline_and_lists_the_api(served: Served) -> None:
    page = served.ui.get("/docs")
    assert page.status_code == 200 and "/docs-assets/swagger-ui-bundle.js" in page.text
    assert "cdn" not in page.text.lower()
    assert served.ui.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    schema = served.api.get("/openapi.json").json()
    assert "/api/sources/{name}/sync" in schema["paths"]
    assert "HTTPBearer" in json.dumps(schema["components"]["securitySchemes"])


def _lake(tmp_path: Path) -> Warehouse:
    lake = Warehouse(tmp_path / "lake")
    lake.create("prod.users", people([10001, 10002, 123], ["Analyst", "Engineer", "Intern"]))
    lake.create("prod.nocdf", people([10001, 10002], ["Analyst", "Engineer"]), cdf=False)
    return lake


def test_sources_end_to_end(tmp_path: Path, served: Served) -> None:
    lake = _lake(tmp_path)
    api = served.api
    assert api.get("/api/sources").json() == []
    kinds = {k["kind"]: k for k in api.get("/api/kinds").json()}
    assert kinds["delta"]["supports_cdc"] and kinds["delta"]["available"]

    # connections
    conn = api.post(
        "/api/connections",
        json={"name": "lake", "kind": "delta", "config": {"path": str(lake.root)}},
    )
    assert conn.status_code == 201 and conn.json()["config"] == {"path": str(lake.root)}
    again = api.post(
        "/api/connections",
        json={"name": "lake", "kind": "delta", "config": {"path": str(lake.root)}},
    )
    assert again.status_code == 422 and "exists already" in again.json()["message"]
    bad = api.post(
        "/api/connections",
        json={"name": "x", "kind": "delta", "config": {"path": str(tmp_path / "none")}},
    )
    assert bad.status_code == 422 and bad.json()["code"] == "configuration"
    assert api.get("/api/connections").json()[0]["name"] == "lake"
    assert api.get("/api/connections/lake").json()["kind"] == "delta"
    assert api.get("/api/connections/nope").status_code == 404
    assert api.get("/api/connections/lake/tables").json() == ["prod.nocdf", "prod.users"]
    cols = api.get("/api/connections/lake/tables/prod.users/columns").json()
    assert [c["name"] for c in cols] == ["uid", "title"]
    patched = api.patch("/api/connections/lake", json={"config": {"path": str(lake.root)}})
    assert patched.status_code == 200

    # test mapping of unsaved sources: the change data feed is off on one table
    body = {
        "connection": "lake",
        "user_id": "uid",
        "properties": [{"column": "title", "name": "Title"}],
    }
    off = api.post("/api/sources/test", json={**body, "table": "prod.nocdf"}).json()
    cdf = next(c for c in off["checks"] if c["name"] == "change data feed")
    assert not off["ok"] and cdf["level"] == "fail"
    assert "delta.enableChangeDataFeed = true" in cdf["fix_sql"]
    on = api.post("/api/sources/test", json={**body, "table": "prod.users"}).json()
    assert on["ok"] and on["rejected"] == 1
    assert on["rejected_rows"][0]["row"]["user_id"] == 123
    assert {r["user_id"] for r in on["preview"]} == {"10001", "10002"}
    refused = api.post("/api/sources", json={**body, "name": "off", "table": "prod.nocdf"})
    assert refused.status_code == 422 and "enableChangeDataFeed" in refused.json()["message"]
    assert (
        api.post(
            "/api/sources", json={**body, "name": "q", "table": "prod.users", "frequency": "soon"}
        ).status_code
        == 422
    )

    # add, sync, see the run, the rejected row and the profile
    made = api.post("/api/sources", json={**body, "name": "users", "table": "prod.users"})
    assert made.status_code == 201, made.text
    doc = made.json()
    assert doc["frequency"] == "12h" and doc["state"] == "active" and doc["next_run"]
    run = api.post("/api/sources/users/sync", params={"wait": "true"}).json()
    assert (run["status"], run["mode"], run["inserted"], run["rejected"]) == (
        "success",
        "initial",
        2,
        1,
    )
    runs = api.get("/api/sources/users/runs").json()
    assert runs[0]["id"] == run["run_id"]
    rejected = api.get(f"/api/runs/{run['run_id']}/rejected").json()
    assert rejected[0]["row"]["user_id"] == 123 and "shorter than 5" in rejected[0]["reason"]
    profile = api.get("/api/profiles/10001").json()
    assert profile["properties"] == {"Title": "Analyst"}
    assert profile["details"]["Title"]["source"] == "users"
    assert api.get("/api/profiles/99999").json()["code"] == "not_found"
    listed = api.get("/api/sources").json()[0]
    assert listed["last_run"]["status"] == "success" and listed["checkpoint"]["position"] == "0"

    # the warehouse changes; a queued sync brings it
    lake.update("prod.users", "uid = 10001", {"title": "'Head of Data'"})
    queued = api.post("/api/sources/users/sync")
    assert queued.status_code == 202 and queued.json()["queued"]
    served.wait_for_run("users", 2)
    assert api.get("/api/profiles/10001").json()["properties"]["Title"] == "Head of Data"

    # frequency, pause and resume, test of a saved source, resync
    assert api.patch("/api/sources/users", json={"frequency": "1h"}).json()["frequency"] == "1h"
    assert api.patch("/api/sources/users", json={"frequency": "often"}).status_code == 422
    paused = api.post("/api/sources/users/pause").json()
    assert paused["state"] == "paused" and paused["next_run"] is None
    assert api.post("/api/sources/users/resume").json()["state"] == "active"
    assert api.post("/api/sources/users/test").json()["ok"]
    resync = api.post("/api/sources/users/resync", params={"wait": "true"}).json()
    assert resync["mode"] == "resync" and resync["operations"] == 0

    # properties: list, remove (from the mapping and the store), and it stays gone
    props = api.get("/api/properties").json()
    assert props == [
        {
            "name": "Title",
            "source": "users",
            "expression": '"title"',
            "column": "title",
            "type": "VARCHAR",
            "users": 2,
            "last_changed": props[0]["last_changed"],
        }
    ]
    assert props[0]["last_changed"].endswith("Z")
    assert api.delete("/api/properties/Title").status_code == 204
    assert api.delete("/api/properties/Title").status_code == 404
    assert api.get("/api/properties").json() == []
    assert api.get("/api/profiles/10001").json()["properties"] == {}
    assert api.get("/api/sources/users").json()["properties"] == []
    lake.update("prod.users", "uid = 10002", {"title": "'CTO'"})
    assert (
        api.post("/api/sources/users/sync", params={"wait": "true"}).json()["status"] == "success"
    )
    assert api.get("/api/profiles/10002").json()["properties"] == {}

    # usage by source and by day
    usage = api.get("/api/usage").json()
    assert usage["sources"] == [{"source": "users", "operations": usage["used"]}]
    assert sum(d["operations"] for d in usage["days"]) == usage["used"] >= 3

    # delete the source, then the connection
    assert api.delete("/api/connections/lake").status_code == 422  # still used
    assert api.delete("/api/sources/users").status_code == 204
    assert api.get("/api/sources/users").status_code == 404
    assert api.get("/api/profiles/10001").status_code == 404
    assert api.delete("/api/connections/lake").status_code == 204


def test_property_removal_rewrites_a_query_mapping(tmp_path: Path, served: Served) -> None:
    lake = _lake(tmp_path)
    api = served.api
    api.post(
        "/api/connections",
        json={"name": "lake", "kind": "delta", "config": {"path": str(lake.root)}},
    )
    query = 'SELECT uid AS "user_id", title AS "Title", upper(title) AS "Loud" FROM prod.users'
    made = api.post("/api/sources", json={"name": "q", "connection": "lake", "query": query})
    assert made.status_code == 201, made.text
    api.post("/api/sources/q/sync", params={"wait": "true"})
    assert api.get("/api/profiles/10002").json()["properties"] == {
        "Title": "Engineer",
        "Loud": "ENGINEER",
    }
    assert api.delete("/api/properties/Loud").status_code == 204
    source = api.get("/api/sources/q").json()
    assert "Loud" not in source["query"] and [p["name"] for p in source["properties"]] == ["Title"]
    lake.update("prod.users", "uid = 10002", {"title": "'CTO'"})
    api.post("/api/sources/q/sync", params={"wait": "true"})
    assert api.get("/api/profiles/10002").json()["properties"] == {"Title": "CTO"}


def test_errors_are_code_and_message(served: Served) -> None:
    resp = served.api.post("/api/sources/nope/sync")
    assert resp.status_code == 404 and resp.json()["code"] == "not_found"
    assert "nope" in resp.json()["message"]
    invalid = served.api.post("/api/sources", json={"name": "x"})
    assert invalid.status_code == 422 and invalid.json()["code"] == "invalid_request"
    assert "connection" in invalid.json()["message"]


SECRET = "Hunter2-plain-text"


def test_secrets_are_write_only_and_encrypted_at_rest(tmp_path: Path) -> None:
    home = tmp_path / "home"
    dsn_with_password = f"postgres:dbname=lake host=db.internal password={SECRET}"
    with serving(home) as served:
        api = served.api
        token = {
            "server_hostname": "adb-1.azuredatabricks.net",
            "http_path": "/sql/1.0/warehouses/abc",
            "access_token": SECRET,
            "catalog": "main",
        }
        made = api.post(
            "/api/connections",
            json={"name": "dbx", "kind": "databricks", "config": token, "save_anyway": True},
        )
        assert made.status_code == 201, made.text
        assert made.json()["secrets_set"] == ["access_token"]
        lake = api.post(
            "/api/connections",
            json={
                "name": "ducky",
                "kind": "ducklake",
                "config": {"catalog": dsn_with_password},
                "save_anyway": True,
            },
        )
        assert lake.status_code == 201, lake.text
        assert (
            lake.json()["config"]["catalog"] == "postgres:dbname=lake host=db.internal password=***"
        )
        changed = api.patch(
            "/api/connections/dbx",
            json={"config": {**token, "access_token": "", "schema": "gold"}, "save_anyway": True},
        )
        assert changed.json()["config"]["schema"] == "gold"
        bodies = [
            made.text,
            lake.text,
            changed.text,
            api.get("/api/connections").text,
            api.get("/api/connections/dbx").text,
            api.get("/api/connections/ducky").text,
            served.ui.get("/").text,
            served.ui.get("/sources/new").text,
        ]
        for body in bodies:
            assert SECRET not in body
        with served.app.state.store_lock:
            # the sources still get the real values (kept through the blank-secret update)
            assert served.app.state.store.get_connection("dbx").config["access_token"] == SECRET
            assert (
                served.app.state.store.get_connection("ducky").config["catalog"]
                == dsn_with_password
            )
    raw = b"".join(
        p.read_bytes() for p in home.iterdir() if p.name.startswith("profilesync.duckdb")
    )
    assert b"dbx" in raw and SECRET.encode() not in raw
    key = home / "secret.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    # without the key the secrets cannot be read back
    key.rename(tmp_path / "elsewhere.key")
    with DuckDBStore(home) as store, pytest.raises(Exception, match="no key was found"):
        store.get_connection("dbx")


def test_sync_now_refuses_while_running(tmp_path: Path) -> None:
    lake = _lake(tmp_path)
    with serving(tmp_path / "home") as served:
        api = served.api
        api.post(
            "/api/connections",
            json={"name": "lake", "kind": "delta", "config": {"path": str(lake.root)}},
        )
        body = {"name": "users", "connection": "lake", "table": "prod.users", "user_id": "uid"}
        assert api.post("/api/sources", json=body).status_code == 201
        scheduler = served.app.state.scheduler
        release = threading.Event()

        def held_sync(*args: Any, **kwargs: Any) -> Any:
            release.wait(10)  # the warehouse is slow to answer
            return engine.sync(*args, **kwargs)

        scheduler.sync = held_sync
        assert api.post("/api/sources/users/sync").status_code == 202
        deadline = time.monotonic() + 10
        while scheduler.running != "users" and time.monotonic() < deadline:
            time.sleep(0.02)
        second = api.post("/api/sources/users/sync")
        assert second.status_code == 409 and second.json()["code"] == "sync_running"
        release.set()
        served.wait_for_run("users", 1)
        time.sleep(0.2)
        assert len(api.get("/api/sources/users/runs").json()) == 1
