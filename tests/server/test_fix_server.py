"""The server stays responsive and discreet: a source's page asks the warehouse outside the
store lock and not on every reload, the access log never waits for the store, and no
invitation code reaches a log line."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from profilesync.server import frequencies
from profilesync.warehouses.delta.warehouse import DeltaWarehouse
from tests.security.team import build_world
from tests.server.conftest import Served, serving


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
