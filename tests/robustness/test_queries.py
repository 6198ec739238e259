"""A ``--query`` that does not parse is refused in one clean line, in the CLI and the API.

The line names what is wrong (an unterminated comment or string, or the token and where
it is) and what is supported; it carries no terminal escape codes and no line breaks,
and the store is left as it was.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Cli, Warehouse, users_table
from tests.robustness.conftest import assert_api_refused, assert_cli_refused, store_state
from tests.server.conftest import serving

#: (case, query, words the message must name)
BAD_SQL = [
    (
        "unterminated comment",
        'SELECT uid AS "user_id", title FROM prod.users /* the scores',
        ["unterminated /* comment", "Supported"],
    ),
    (
        "unterminated string",
        'SELECT uid AS "user_id" FROM prod.users WHERE title = \'CTO',
        ["unterminated 'string'", "Supported"],
    ),
    (
        "unterminated quoted name",
        'SELECT uid AS "user_id FROM prod.users',
        ['unterminated "quoted name"', "Supported"],
    ),
    (
        "open parenthesis",
        'SELECT uid AS "user_id" FROM prod.users WHERE (',
        ["line 1, column", "Supported"],
    ),
    (
        "misspelt keyword",
        'SELEC uid AS "user_id" FROM prod.users',
        ["out of place", "near 'AS'", "Supported"],
    ),
]


@pytest.fixture
def lake(tmp_path: Path) -> Warehouse:
    warehouse = Warehouse(tmp_path / "lake")
    warehouse.create("prod.users", users_table(3))
    return warehouse


@pytest.mark.parametrize(("query", "words"), [c[1:] for c in BAD_SQL], ids=[c[0] for c in BAD_SQL])
def test_the_cli_refuses_sql_that_does_not_parse_in_one_line(
    tmp_path: Path, lake: Warehouse, query: str, words: list[str]
) -> None:
    cli = Cli(tmp_path / "home", tmp_path)
    cli.ok("connection", "add", "lake", "--kind", "delta", "--path", str(lake.root))
    before = store_state(cli.home)
    proc = cli("source", "add", "s", "--connection", "lake", "--query", query)
    assert_cli_refused(proc, "does not parse", *words)
    assert store_state(cli.home) == before


def test_the_api_refuses_sql_that_does_not_parse_with_a_4xx(
    tmp_path: Path, lake: Warehouse
) -> None:
    home = tmp_path / "home"
    with serving(home) as served:
        created = served.api.post(
            "/api/connections",
            json={"name": "lake", "kind": "delta", "config": {"path": str(lake.root)}},
        )
        assert created.status_code == 201, created.text
        for _case, query, words in BAD_SQL:
            body = {"name": "s", "connection": "lake", "query": query}
            for path in ("/api/sources", "/api/sources/test"):
                assert_api_refused(served.api.post(path, json=body), "does not parse", *words)
        assert served.api.get("/api/sources").json() == []
