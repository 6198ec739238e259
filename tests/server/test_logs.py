"""``profilesync serve --log-format json``: every stderr line is one JSON object, requests and
syncs carry their fields, and no token, password or API key is ever written."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from profilesync.server.logs import redact
from tests.conftest import Warehouse
from tests.server.conftest import free_port, people
from tests.server.test_serve import serve_command

PASSWORD = "a-long-ui-password"


def _start(home: Path, port: int, out: Path, err: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PROFILESYNC_ADMIN_PASSWORD": PASSWORD, "NO_COLOR": "1"}
    env.pop("PROFILESYNC_FAULT", None)
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            serve_command(home, port, "--log-format", "json"),
            stdout=stdout,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, err.read_text()
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"serve did not start:\n{err.read_text()}")


def _use(url: str, token: str, lake: Warehouse) -> str:
    """What a user does: API calls with the token, two syncs (one failing), events sent
    with the project key in a query string, and the UI after logging in."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as api:
        key = _sync_twice(api, lake)
    identification = json.dumps({"user_id": "user-00001", "user_properties": {"plan": "pro"}})
    sent = httpx.post(f"{url}/identify?api_key={key}", data={"identification": identification})
    assert sent.status_code == 200, sent.text
    with httpx.Client(base_url=url, timeout=60) as ui:
        ui.post("/login", data={"username": "admin", "password": PASSWORD, "next": "/"})
        assert ui.get("/").status_code == 200
    return key


def _sync_twice(api: httpx.Client, lake: Warehouse) -> str:
    """A source synced once, then failing (its table is gone); a project's new API key."""
    config = {"path": str(lake.root)}
    api.post("/api/connections", json={"name": "lake", "kind": "delta", "config": config})
    body = {"name": "users", "connection": "lake", "table": "prod.users", "user_id": "uid"}
    assert api.post("/api/sources", json=body).status_code == 201
    assert api.get("/api/sources").status_code == 200
    assert api.post("/api/sources/users/sync", params={"wait": "true"}).status_code == 200
    shutil.rmtree(lake.path("prod.users"))
    assert api.post("/api/sources/users/sync", params={"wait": "true"}).status_code >= 400
    return str(api.post("/api/projects", json={"name": "web"}).json()["api_key"])


def test_json_logs_carry_request_and_sync_fields_and_no_secret(tmp_path: Path) -> None:
    lake = Warehouse(tmp_path / "lake")
    lake.create("prod.users", people([10001, 10002, 123], ["Analyst", "Engineer", "Intern"]))
    port, out, err = free_port(), tmp_path / "stdout", tmp_path / "stderr"
    proc = _start(tmp_path / "home", port, out, err)
    try:
        match = re.search(r"admin API token.*?: (ps_\S+)", out.read_text())
        assert match, out.read_text()
        token = match.group(1)
        key = _use(f"http://127.0.0.1:{port}", token, lake)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    text = err.read_text()
    lines = [json.loads(line) for line in text.splitlines()]  # every line is one object
    assert all({"ts", "level", "logger", "message"} <= line.keys() for line in lines)
    assert all(line["ts"].endswith("Z") for line in lines)

    def one(**wanted: Any) -> dict[str, Any]:
        found = [line for line in lines if wanted.items() <= line.items()]
        assert len(found) == 1, (wanted, text)
        return found[0]

    listed = one(logger="profilesync.access", method="GET", path="/api/sources")
    assert listed["status"] == 200 and listed["duration_ms"] >= 0 and listed["level"] == "INFO"
    assert one(logger="profilesync.access", path="/identify")["status"] == 200
    assert one(logger="profilesync.access", method="GET", path="/")["user"] == "admin"
    synced = one(logger="profilesync.sync", status="success")
    assert (synced["source"], synced["run_id"], synced["operations"]) == ("users", 1, 2)
    assert synced["rows"]["inserted"] == 2 and synced["rows"]["rejected"] == 1
    assert synced["duration_ms"] > 0
    failed = one(logger="profilesync.sync", status="failed")
    assert (failed["source"], failed["run_id"], failed["level"]) == ("users", 2, "WARNING")
    assert failed["error_code"]
    assert any(line["logger"] == "uvicorn.error" for line in lines)  # uvicorn's own, as JSON
    for secret in (token, PASSWORD, key):
        assert secret not in text


def test_redact_hides_tokens_and_keys_in_any_text() -> None:
    token = "ps_" + "x" * 43
    assert token not in redact(f"curl -H 'Authorization: Bearer {token}'")
    assert token not in redact(f"token {token} refused")
    assert redact("GET /identify?api_key=0123abcd&x=1") == "GET /identify?api_key=[redacted]&x=1"
    assert "hunter22" not in redact('{"password": "hunter22"}')
    assert redact("sync of users: 3 inserted") == "sync of users: 3 inserted"
