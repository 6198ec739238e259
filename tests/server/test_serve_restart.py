"""``profilesync serve`` comes back on its own port right after clients spoke to it.

Stopping a server that had open client connections leaves them in TIME_WAIT on its port
for about a minute; a restart must not take that for a busy port (SDK clients lose their
batches while it is down)."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.server.conftest import free_port
from tests.server.test_serve import Serve


def test_serve_restarts_on_its_port_right_after_client_traffic(tmp_path: Path) -> None:
    home, port = tmp_path / "home", free_port()
    first = Serve(home, port)
    first.wait_ready()
    clients = [httpx.Client(base_url=first.url, timeout=10) for _ in range(4)]
    for client in clients:  # keep-alive connections the server closes when it stops
        for _ in range(3):
            assert client.get("/health").status_code == 200
    assert first.stop() == 0
    for client in clients:
        client.close()
    again = Serve(home, port)
    try:
        again.wait_ready()
        assert httpx.get(f"{again.url}/health", timeout=5).status_code == 200
    finally:
        again.stop()
    assert "cannot listen" not in again.output, again.output
