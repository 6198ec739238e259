"""A real ``serve`` app: uvicorn in a thread on a free 127.0.0.1 port, spoken to over HTTP.

``serving(home, ...)`` starts one; the object it yields carries the admin token, the UI
password, an API client (bearer token) and a UI client (logged in with the session cookie).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
import uvicorn

from profilesync.server.app import create_app

PASSWORD = "correct-horse-battery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    url: str
    app: Any
    token: str
    api: httpx.Client
    ui: httpx.Client
    home: Path

    def login(self, client: httpx.Client | None = None) -> httpx.Client:
        client = client or httpx.Client(base_url=self.url, follow_redirects=False, timeout=30)
        resp = client.post("/login", data={"username": "admin", "password": PASSWORD, "next": "/"})
        assert resp.status_code == 303, resp.text
        return client

    def wait_for_run(self, source: str, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        """Poll the API until ``source`` has ``count`` runs and none is queued or running."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.api.get(f"/api/sources/{source}/runs").json()
            state = self.api.get(f"/api/sources/{source}").json()["state"]
            if len(runs) >= count and state not in ("queued", "running"):
                return list(runs)
            time.sleep(0.1)
        raise AssertionError(f"{source} did not reach {count} runs in {timeout}s")


@contextmanager
def serving(home: Path, **options: Any) -> Iterator[Served]:
    """Run ``create_app(home, **options)`` with uvicorn until the block ends."""
    options.setdefault("tick_seconds", None)
    app = create_app(home, **options)
    with app.state.store_lock:
        token = app.state.auth.issue_token(app.state.store)
        app.state.auth.set_password(app.state.store, PASSWORD)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    url = f"http://127.0.0.1:{port}"
    api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    served = Served(url, app, token, api, httpx.Client(base_url=url, timeout=60), home)
    served.login(served.ui)
    try:
        yield served
    finally:
        api.close()
        served.ui.close()
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with serving(tmp_path / "home") as s:
        yield s


def people(ids: list[int], titles: list[str]) -> pa.Table:
    return pa.table({"uid": pa.array(ids, pa.int64()), "title": titles})
