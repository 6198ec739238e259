"""`profilesync serve` as a user runs it: first start, the CLI refusing, a clean stop."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from tests.conftest import Cli
from tests.server.conftest import free_port

PASSWORD = "a-long-ui-password"


def serve_command(home: Path, port: int, *args: str) -> list[str]:
    cli = [sys.executable, "-m", "profilesync.cli", "--home", str(home)]
    return [*cli, "serve", "--port", str(port), *args]


class Serve:
    """One `profilesync serve` subprocess and everything it printed."""

    def __init__(self, home: Path, port: int, *args: str) -> None:
        env = {
            **os.environ,
            "PROFILESYNC_ADMIN_PASSWORD": PASSWORD,
            "COLUMNS": "200",
            "NO_COLOR": "1",
        }
        env.pop("PROFILESYNC_FAULT", None)
        self.proc = subprocess.Popen(
            serve_command(home, port, *args),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self.url = f"http://127.0.0.1:{port}"
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.output
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"serve did not start:\n{self.output}")

    def stop(self, how: int = signal.SIGINT) -> int:
        self.proc.send_signal(how)
        code = self.proc.wait(timeout=30)
        self.reader.join(timeout=10)  # read to the end before closing the pipe
        if self.proc.stdout:
            self.proc.stdout.close()
        return code


def test_serve_first_start_cli_refusal_and_clean_stop(tmp_path: Path) -> None:
    home = tmp_path / "home"
    cli = Cli(home, tmp_path)
    port = free_port()
    server = Serve(home, port)
    try:
        server.wait_ready()
        match = re.search(r"admin API token.*?: (ps_\S+)", server.output)
        assert match, server.output
        token = match.group(1)
        info = json.loads((home / "server.json").read_text())
        assert info == {**info, "pid": server.proc.pid, "url": server.url}
        # the CLI on the same home refuses at once, naming the server
        started = time.monotonic()
        refused = cli("source", "list")
        assert refused.returncode == 1
        assert "profilesync serve" in refused.stderr and server.url in refused.stderr
        assert time.monotonic() - started < 8
        # the API answers with the printed token; the UI with the password from the environment
        api = httpx.get(f"{server.url}/api/sources", headers={"Authorization": f"Bearer {token}"})
        assert api.status_code == 200 and api.json() == []
        login = httpx.post(
            f"{server.url}/login", data={"username": "admin", "password": PASSWORD, "next": "/"}
        )
        assert login.status_code == 303
    finally:
        code = server.stop()
    assert code == 0, server.output
    assert not (home / "server.json").exists()
    raw = (home / "profilesync.duckdb").read_bytes()
    assert token.encode() not in raw and PASSWORD.encode() not in raw  # stored hashed
    assert cli("source", "list").returncode == 0

    # a later start keeps the token (not printed again) and the login
    again = Serve(home, port)
    try:
        again.wait_ready()
        assert "admin API token" not in again.output
        assert (
            httpx.get(
                f"{again.url}/api/sources", headers={"Authorization": f"Bearer {token}"}
            ).status_code
            == 200
        )
    finally:
        assert again.stop(signal.SIGTERM) == 0  # as a service manager stops it
    assert not (home / "server.json").exists()


def test_serve_generates_a_login_when_none_is_given(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k != "PROFILESYNC_ADMIN_PASSWORD"}
    port = free_port()
    proc = subprocess.Popen(
        serve_command(home, port),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**env, "COLUMNS": "200"},
    )
    try:
        deadline = time.monotonic() + 30
        lines: list[str] = []
        assert proc.stdout is not None
        while time.monotonic() < deadline and not any("password" in line for line in lines):
            lines.append(proc.stdout.readline())
        match = re.search(r"user admin, password (\S+)", "".join(lines))
        assert match, lines
        ready = False
        while not ready and time.monotonic() < deadline:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
            except httpx.TransportError:
                time.sleep(0.1)
        login = httpx.post(
            f"http://127.0.0.1:{port}/login",
            data={"username": "admin", "password": match.group(1), "next": "/"},
        )
        assert login.status_code == 303
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        if proc.stdout:
            proc.stdout.close()


def test_a_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = Cli(tmp_path / "home", tmp_path)(
            "serve", "--port", str(port), env={"PROFILESYNC_ADMIN_PASSWORD": PASSWORD}
        )
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr and "--port" in proc.stderr
