"""The server stays responsive and discreet: a source's page asks the warehouse outside the
store lock and not on every reload, the access log never waits for the store, and no
invitation code reaches a log line."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from profilesync.server import frequencies, logs
from profilesync.server.app import create_app
from profilesync.warehouses.delta.warehouse import DeltaWarehouse
from tests.security.team import build_world
from tests.server.conftest import PASSWORD, Served, free_port, serving


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Served]:
    with serving(tmp_path / "home") as s:
        build_world(tmp_path, s)
        yield s


def test_a_slow_warehouse_holds_up_only_its_source_page_and_is_asked_once(
    world: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(frequencies, "_judged", {}, raising=False)
    inspecting, go_on, calls = threading.Event(), threading.Event(), []
    inspect = DeltaWarehouse.inspect

    def slow_inspect(self: DeltaWarehouse, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        inspecting.set()
        go_on.wait(20)
        return inspect(self, *args, **kwargs)

    monkeypatch.setattr(DeltaWarehouse, "inspect", slow_inspect)
    pages: list[httpx.Response] = []
    reader = threading.Thread(target=lambda: pages.append(world.ui.get("/sources/people")))
    reader.start()
    try:
        assert inspecting.wait(20), "the page never asked the warehouse"
        # meanwhile another request that needs the store answers at once
        started = time.monotonic()
        listed = world.api.get("/api/sources", timeout=5)
        assert listed.status_code == 200 and time.monotonic() - started < 5
    finally:
        go_on.set()
        reader.join(30)
    assert pages[0].status_code == 200 and "Change frequency" in pages[0].text
    for _ in range(3):  # the page reloads while a sync runs
        assert world.ui.get("/sources/people").status_code == 200
    assert len(calls) == 1


class Lines(logging.Handler):
    """The access log's records, as ``--log-format json`` writes them."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logs.JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def of(self, path: str, count: int = 1) -> list[dict[str, Any]]:
        """The lines of ``path``, once there are ``count`` (written as each answer ends)."""
        deadline = time.monotonic() + 5
        while True:
            found = [doc for doc in map(json.loads, self.lines) if doc.get("path") == path]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.02)


@contextlib.contextmanager
def logged(home: Path) -> Iterator[tuple[str, Any, Lines]]:
    """``serve``'s app behind its access log (as ``profilesync serve`` runs it)."""
    app = create_app(home, tick_seconds=None)
    lines = Lines()
    logs.access_log.addHandler(lines)
    logs.access_log.setLevel(logging.INFO)
    port = free_port()
    config = uvicorn.Config(logs.AccessLog(app), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", app, lines
    finally:
        logs.access_log.removeHandler(lines)
        server.should_exit = True
        thread.join(timeout=30)


def test_the_access_log_never_waits_for_the_store(tmp_path: Path) -> None:
    with logged(tmp_path / "home") as (url, app, lines):
        held, done = threading.Event(), threading.Event()

        def hold() -> None:  # a long write elsewhere (a big delete, a slow backup)
            with app.state.store_lock:
                held.set()
                done.wait(20)

        holder = threading.Thread(target=hold)
        holder.start()
        try:
            assert held.wait(5)
            cookies = {"profilesync_session": "an-old-session"}
            started = time.monotonic()
            for path in ("/health", "/static/favicon.svg"):
                answer = httpx.get(url + path, cookies=cookies, timeout=5)
                assert answer.status_code == 200, path
            assert time.monotonic() - started < 5
            assert lines.of("/health") and lines.of("/static/favicon.svg")
            assert "user" not in lines.of("/health")[0]
        finally:
            done.set()
            holder.join(10)


def test_no_invitation_code_reaches_the_log(tmp_path: Path) -> None:
    with logged(tmp_path / "home") as (url, app, lines):
        with app.state.store_lock:
            token = app.state.auth.issue_token(app.state.store)
            app.state.auth.set_password(app.state.store, "the-admin-password")
        admin = {"Authorization": f"Bearer {token}"}
        invited = httpx.post(url + "/api/members", json={"name": "bo"}, headers=admin)
        assert invited.status_code == 201, invited.text
        link = invited.json()["invite_url"]
        code = link.rsplit("/", 1)[1]
        assert httpx.get(link).status_code == 200
        refused = {"password": "one-long-password", "confirm": "another-password"}
        assert httpx.post(link, data=refused).status_code == 422
        assert httpx.get(link + "/more").status_code == 404  # no route: the path is masked
        accepted = {"password": "one-long-password", "confirm": "one-long-password"}
        assert httpx.post(link, data=accepted).status_code == 303
        seen = lines.of("/login/invite/{code}", 3)
        assert [line["method"] for line in seen] == ["GET", "POST", "POST"]
        assert lines.of("/login/invite/[redacted]/more")
        assert lines.lines and not [line for line in lines.lines if code in line]
    assert logs.redact(f"GET /login/invite/{code}?next=/ HTTP/1.1") == (
        "GET /login/invite/[redacted]?next=/ HTTP/1.1"
    )


def test_a_login_checks_the_password_without_holding_the_store(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    from profilesync.app import users as app_users

    hashing, go_on = threading.Event(), threading.Event()
    verify = app_users.verify_password

    def slow_verify(password: str, stored: str) -> bool:  # scrypt on a busy machine
        hashing.set()
        go_on.wait(20)
        return verify(password, stored)

    monkeypatch.setattr(app_users, "verify_password", slow_verify)
    answers: list[httpx.Response] = []
    form = {"username": "admin", "password": PASSWORD, "next": "/"}
    login = threading.Thread(
        target=lambda: answers.append(httpx.post(served.url + "/login", data=form, timeout=30))
    )
    login.start()
    try:
        assert hashing.wait(20), "the login never checked the password"
        listed = served.api.get("/api/sources", timeout=5)
        assert listed.status_code == 200
    finally:
        go_on.set()
        login.join(30)
    assert answers[0].status_code == 303
