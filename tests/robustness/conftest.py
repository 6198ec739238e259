"""Shared checks for the bad-input corpus: a refusal is clean and loses nothing.

Every case in ``tests/robustness/`` feeds one bad input to a real surface (the CLI entry
point, the REST API, ``/2/httpapi``, ``events import``, a broken warehouse) and asserts
what a user would see: exit code 1 (2 for a usage error) or an HTTP 4xx with a
``{code, message}`` body, one readable line that names the cause and the fix, no
traceback, no terminal escape codes, and the store exactly as it was.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import duckdb
import httpx

ESCAPES = re.compile(r"\x1b\[|[\x00-\x08\x0b-\x1f\x7f]")


def assert_cli_refused(proc: subprocess.CompletedProcess[str], *words: str, code: int = 1) -> str:
    """A CLI failure: exit ``code``, ``error: ...`` in one clean line naming ``words``."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "unexpected" not in proc.stderr.lower(), proc.stderr
    if code == 2:  # a usage error: click's usage block, which says what is wrong
        assert "Usage:" in proc.stderr or "Error" in proc.stderr, proc.stderr
        return proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith("error: "), line
    assert not ESCAPES.search(line), repr(line)
    for word in words:
        assert word.lower() in line.lower(), (word, line)
    return line


def assert_api_refused(resp: httpx.Response, *words: str, status: int | None = None) -> str:
    """An API refusal: a 4xx with a ``{code, message}`` JSON body naming ``words``."""
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text)
    if status is not None:
        assert resp.status_code == status, (resp.status_code, resp.text)
    body = resp.json()
    assert isinstance(body, dict), body
    message = str(body.get("message", body.get("error", "")))
    assert message, body
    assert "Traceback" not in resp.text
    assert not ESCAPES.search(message), repr(message)
    assert "\n" not in message, repr(message)
    for word in words:
        assert word.lower() in message.lower(), (word, message)
    return message


def store_state(home: Path) -> dict[str, Any]:
    """Everything a failed command must leave as it was, read straight from the store file.

    Opened read-only with a plain DuckDB connection, so reading changes nothing (and does
    not go through the code under test).
    """
    path = home / "profilesync.duckdb"
    if not path.exists():
        return {"exists": False}
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'main' ORDER BY table_name"
            ).fetchall()
        ]
        state: dict[str, Any] = {"exists": True}
        for table in tables:
            if table in ("settings",):
                continue
            rows = con.execute(f'SELECT * FROM "{table}"').fetchall()
            state[table] = sorted(json.dumps(r, default=str, sort_keys=True) for r in rows)
        return state
    finally:
        con.close()
