"""The audit log records who changed what through the UI, the API and the CLI, with field
names and never values, newest first, and is readable by admins and editors only."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.security.team import Team, build_world
from tests.server.conftest import Served, serving


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with serving(tmp_path / "home") as s:
        build_world(tmp_path, s)
        yield s


def test_changes_through_api_and_ui_are_recorded_with_who_and_how(
    served: Served, team: Team
) -> None:
    ed = team("ed", "editor")
    assert ed.api.patch("/api/sources/people", json={"frequency": "6h"}).status_code == 200
    assert ed.ui.post("/sources/people/pause").status_code == 303
    secret = {"config": {"path": "/nowhere", "password": "hunter2-secret"}}
    ed.api.patch("/api/connections/lake", json=secret)  # refused or not, never logged with values
    assert ed.api.post("/api/sources/nosuch/pause").status_code == 404  # failed: not recorded
    log = served.api.get("/api/audit", params={"limit": 10}).json()
    assert "hunter2" not in json.dumps(log)
    first, second = log[-1], log[-2]  # the world's own changes came earlier, by admin
    recent = [(e["actor"], e["via"], e["action"], e["target"]) for e in log[:2]]
    assert ("ed", "ui", "source.pause", "people") in recent
    assert ("ed", "api", "source.update", "people") in recent
    update = next(e for e in log if e["action"] == "source.update")
    assert update["detail"]["fields"] == ["frequency"] and update["target_kind"] == "source"
    assert (first["actor"], first["action"]) == ("admin", "connection.create")
    assert second["action"] == "source.create" and second["target"] == "people"
    assert not any(e["target"] == "nosuch" for e in log)


def test_queries_and_tests_leave_no_entry(served: Served, team: Team) -> None:
    before = served.api.get("/api/audit").json()
    vera, ed = team("vera", "viewer"), team("ed", "editor")
    days = {"start": "2024-05-01", "end": "2024-05-02"}
    funnel = {"steps": ["View", "Buy"], "window": "1h", **days}
    assert vera.api.post("/api/query/funnel", json=funnel).status_code == 200
    retention = {"start_event": "View", "return_event": "Buy", "buckets": 2, **days}
    assert vera.api.post("/api/query/retention", json=retention).status_code == 200
    assert ed.api.post("/api/connections/lake/test").status_code == 200
    assert ed.api.post("/api/sources/people/test").status_code == 200
    assert served.api.get("/api/audit").json() == before


def test_the_audit_page_and_filter(served: Served, team: Team) -> None:
    ed = team("ed", "editor")
    ed.ui.post("/sources/people/frequency", data={"frequency": "1d"})
    only = served.api.get("/api/audit", params={"target": "people"}).json()
    assert only and all(e["target"] == "people" for e in only)
    page = ed.ui.get("/audit", params={"target": "people"})
    assert page.status_code == 200
    assert "source.update" in page.text and "<strong>ed</strong>" in page.text
    vera = team("vera", "viewer")
    assert vera.ui.get("/audit").status_code == 403
    assert vera.api.get("/api/audit").status_code == 403


def test_user_and_token_changes_are_recorded(served: Served, team: Team) -> None:
    served.api.post("/api/members", json={"name": "bo", "role": "viewer"})
    served.ui.post("/members/bo/role", data={"role": "editor"})
    vera = team("vera", "viewer")
    vera.ui.post("/account/tokens", data={"label": "cron"})
    actions = [(e["actor"], e["action"], e["target"]) for e in served.api.get("/api/audit").json()]
    assert actions[:3] == [
        ("vera", "token.create", "cron"),
        ("admin", "user.role", "bo"),
        ("admin", "user.invite", "bo"),
    ]


def test_the_cli_records_changing_commands_as_the_os_user(tmp_path: Path) -> None:
    home = tmp_path / "home"

    def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "profilesync.cli", "--home", str(home), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )

    cli("user", "add", "ana", "--role", "editor", "--password-stdin", stdin="ana-pass-123\n")
    cli("user", "list")  # a read: not recorded
    cli("user", "role", "ana", "owner")  # failed: not recorded
    cli("config", "set", "plan", "enterprise")
    log = json.loads(cli("audit", "--json").stdout)
    assert [(e["via"], e["action"], e["target"]) for e in log] == [
        ("cli", "settings.update", None),
        ("cli", "user.create", "ana"),
    ]
    assert log[1]["detail"]["fields"] == ["name", "password_stdin", "role"]
    assert "ana-pass-123" not in json.dumps(log)
    assert log[0]["actor"] and log[0]["actor"] == log[1]["actor"]


def test_a_connection_made_in_the_add_source_flow_is_recorded(
    served: Served, team: Team, tmp_path: Path
) -> None:
    """The wizard's connection step answers 200 with the next step, not a redirect."""
    ed = team("ed", "editor")
    form = {"step": "connection", "action": "next", "kind": "delta", "conn_name": "lake2",
            "cfg_path": str(tmp_path / "lake")}  # fmt: skip
    step = ed.ui.post("/sources/new", data=form)
    assert step.status_code == 200 and "lake2" in step.text, step.text
    (tmp_path / "empty").mkdir()
    refused = ed.ui.post(
        "/sources/new", data={**form, "conn_name": "empty", "cfg_path": str(tmp_path / "empty")}
    )
    assert refused.status_code == 422  # not saved, so not recorded
    made = [
        (e["actor"], e["via"], e["target"])
        for e in served.api.get("/api/audit").json()
        if e["action"] == "connection.create"
    ]
    assert made[0] == ("ed", "ui", "lake2") and ("ed", "ui", "empty") not in made
