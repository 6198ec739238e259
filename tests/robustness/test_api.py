"""Bad input to the REST API of a real ``serve`` app: a 4xx ``{code, message}``, nothing changed.

The API and the CLI refuse the same names and frequencies, because both call the one rule
in :mod:`profilesync.model`; the lists below are the CLI corpus's own.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from profilesync.model import Connection
from profilesync.store.duckdb import DuckDBStore
from profilesync.sync import engine
from tests.conftest import Warehouse, resolve_and_add, users_table
from tests.robustness.conftest import assert_api_refused, store_state
from tests.robustness.test_cli import BAD_NAMES, FREQUENCIES
from tests.server.conftest import Served, serving


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A home with a Delta connection ``lake`` and a synced source ``users``."""
    warehouse = Warehouse(tmp_path / "lake")
    warehouse.create("prod.users", users_table(5))
    home = tmp_path / "home"
    with DuckDBStore(home) as store:
        store.add_connection(Connection("lake", "delta", {"path": str(warehouse.root)}))
        resolve_and_add(
            store,
            "users",
            "lake",
            table="prod.users",
            user_id="uid",
            properties=[("title", "Title")],
        )
        engine.sync(store, "users")
    return home


@pytest.fixture
def served(home: Path) -> Iterator[Served]:
    """The app on ``home``; each case leaves the store file as it was (read once it stopped)."""
    before = store_state(home)
    with serving(home) as s:
        yield s
    after = store_state(home)
    # the server's first start makes the admin and its token; nothing else may change
    bootstrap = ("users", "api_tokens")
    assert [json.loads(u)[0] for u in after["users"]] == ["admin"]
    assert [json.loads(t)[2] for t in after["api_tokens"]] == ["serve"]
    assert {k: v for k, v in after.items() if k not in bootstrap} == {
        k: v for k, v in before.items() if k not in bootstrap
    }


def _source(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "scores",
        "connection": "lake",
        "table": "prod.users",
        "user_id": "uid",
        "properties": [{"column": "score"}],
        "strategy": "cdc",
        "frequency": "12h",
    }
    return {**body, **changes}


@pytest.mark.parametrize("frequency", FREQUENCIES, ids=lambda f: f[:24])
def test_bad_frequency_on_create_is_422(served: Served, frequency: str) -> None:
    resp = served.api.post("/api/sources", json=_source(frequency=frequency))
    message = assert_api_refused(resp, "frequency", status=422)
    assert len(message) < 300, message
    assert resp.json()["code"] == "configuration"


@pytest.mark.parametrize("frequency", ["0", str(2**63 + 1), "99999d"], ids=str)
def test_bad_frequency_on_change_is_422_and_sources_still_list(
    served: Served, frequency: str
) -> None:
    resp = served.api.patch("/api/sources/users", json={"frequency": frequency})
    assert_api_refused(resp, "frequency", status=422)
    assert served.api.get("/api/sources").status_code == 200
    assert served.ui.get("/").status_code == 200


@pytest.mark.parametrize("name", BAD_NAMES, ids=lambda n: repr(n)[:20])
def test_bad_names_are_422(served: Served, name: str) -> None:
    conn = {"name": name, "kind": "delta", "config": {"path": "/nowhere"}}
    resp = served.api.post("/api/connections", json=conn)
    assert_api_refused(resp, "connection name", "letters, digits", status=422)
    resp = served.api.post("/api/sources", json=_source(name=name))
    assert_api_refused(resp, "source name", "letters, digits", status=422)


UNKNOWN = [
    ("get", "/api/sources/nosuch", "no source named"),
    ("get", "/api/sources/nosuch/runs", "no source named"),
    ("post", "/api/sources/nosuch/sync?wait=true", "no source named"),
    ("delete", "/api/sources/nosuch", "no source named"),
    ("get", "/api/connections/nosuch", "no connection named"),
    ("delete", "/api/connections/nosuch", "no connection named"),
    ("get", "/api/connections/nosuch/tables", "no connection named"),
]


@pytest.mark.parametrize(
    ("method", "url", "word"), UNKNOWN, ids=[f"{m} {u}" for m, u, _ in UNKNOWN]
)
def test_unknown_names_are_404(served: Served, method: str, url: str, word: str) -> None:
    resp = served.api.request(method.upper(), url)
    assert_api_refused(resp, word, status=404)
    assert resp.json()["code"] == "not_found"


def test_frequency_saved_before_the_bound_still_lists(home: Path) -> None:
    """A store written by an older version may hold a frequency past any date."""
    with DuckDBStore(home) as store:
        store.con.execute("UPDATE sources SET frequency_seconds = 10 ** 15")
    with serving(home) as served:
        served.api.post("/api/sources/users/sync?wait=true").raise_for_status()
        assert served.api.get("/api/sources").status_code == 200
        assert served.ui.get("/").status_code == 200
