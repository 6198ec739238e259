"""Named users over real HTTP: invitations, logins, roles, disabling, tokens, the last
admin, the login throttle for a named user, and a home from before users."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from profilesync.app import session
from profilesync.app import users as app_users
from profilesync.server.auth import SESSION_COOKIE, Auth
from tests.security.team import MEMBER_PASSWORD, Team
from tests.server.conftest import Served, serving


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with serving(tmp_path / "home") as s:
        yield s


def browser(served: Served) -> httpx.Client:
    return httpx.Client(base_url=served.url, follow_redirects=False, timeout=60)


def test_an_admin_invites_and_the_invitee_sets_a_password(served: Served) -> None:
    made = served.ui.post("/members", data={"name": "Ana", "role": "editor"})
    assert made.status_code == 303
    page = served.ui.get(made.headers["location"]).text
    link = re.search(r'id="invite-link"[^>]*value="([^"]+)"', page)
    assert link and "/login/invite/" in link.group(1), page
    assert "invited" in served.ui.get("/members").text
    assert link.group(1) not in served.ui.get("/members").text  # shown once
    with browser(served) as ana:
        path = link.group(1).removeprefix(served.url)
        assert "Welcome, ana" in ana.get(path).text
        short = ana.post(path, data={"password": "short", "confirm": "short"})
        assert short.status_code == 422 and "at least 8 characters" in short.text
        done = ana.post(path, data={"password": "ana-secret-1", "confirm": "ana-secret-1"})
        assert done.status_code == 303 and SESSION_COOKIE in ana.cookies
        assert "ana" in ana.get("/account").text and "(editor)" in ana.get("/account").text
        assert ana.get(path).status_code == 404  # the code is spent
    with browser(served) as again:
        login = {"username": "ana", "password": "ana-secret-1", "next": "/"}
        assert again.post("/login", data=login).status_code == 303


def test_api_invites_with_a_link_and_changes_roles(served: Served, team: Team) -> None:
    resp = served.api.post("/api/members", json={"name": "bo", "role": "viewer"})
    assert resp.status_code == 201 and resp.json()["status"] == "invited"
    assert "/login/invite/" in resp.json()["invite_url"]
    changed = served.api.patch("/api/members/bo", json={"role": "editor"})
    assert changed.json()["role"] == "editor"
    bad = served.api.patch("/api/members/bo", json={"role": "owner"})
    assert bad.status_code == 422 and "admin, editor, viewer" in bad.json()["message"]


def test_disabling_stops_sessions_and_tokens_at_once(served: Served, team: Team) -> None:
    ed = team("ed", "editor")
    assert ed.ui.get("/").status_code == 200 and ed.api.get("/api/sources").status_code == 200
    assert served.ui.post("/members/ed/disable").status_code == 303
    assert ed.ui.get("/").status_code == 303  # back to the login
    assert ed.api.get("/api/sources").status_code == 401
    login = {"username": "ed", "password": MEMBER_PASSWORD, "next": "/"}
    with browser(served) as fresh:
        assert fresh.post("/login", data=login).status_code == 401
    assert served.ui.post("/members/ed/enable").status_code == 303
    assert ed.api.get("/api/sources").status_code == 200  # the token was not revoked


def test_the_last_admin_cannot_be_demoted_or_disabled(served: Served, team: Team) -> None:
    demote = served.ui.post("/members/admin/role", data={"role": "editor"})
    assert demote.status_code == 422 and "last active admin" in demote.text
    disable = served.api.patch("/api/members/admin", json={"disabled": True})
    assert disable.status_code == 422 and "make another user admin first" in disable.text
    team("root2", "admin")
    assert served.api.patch("/api/members/admin", json={"role": "viewer"}).status_code == 200


def test_tokens_act_with_their_users_role_and_die_when_revoked(served: Served, team: Team) -> None:
    vera = team("vera", "viewer")
    made = vera.api.post("/api/tokens", json={"label": "report script"})
    assert made.status_code == 201
    token, token_id = made.json()["token"], made.json()["id"]
    listed = vera.api.get("/api/tokens").json()
    assert {t["label"] for t in listed} == {"tests", "report script"}
    assert all("token" not in t for t in listed) and listed[0]["hint"].startswith("ps_…")
    script = httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {token}"})
    with script:
        assert script.get("/api/sources").status_code == 200
        assert script.post("/api/sources/x/pause").status_code == 403  # a viewer's token
        assert script.delete(f"/api/tokens/{token_id}").status_code == 204
        assert script.get("/api/sources").status_code == 401
    used = {t["label"]: t["last_used_at"] for t in vera.api.get("/api/tokens").json()}
    assert used["tests"] is not None


def test_the_account_page_creates_and_revokes_tokens_and_changes_the_password(
    served: Served, team: Team
) -> None:
    vera = team("vera", "viewer")
    made = vera.ui.post("/account/tokens", data={"label": "cron"})
    assert made.status_code == 303
    page = vera.ui.get(made.headers["location"]).text
    token = re.search(r'id="new-token"[^>]*value="(ps_[^"]+)"', page)
    assert token, page
    assert vera.ui.get("/account").text.count(token.group(1)) == 0  # shown once
    wrong = vera.ui.post(
        "/account/password",
        data={"current": "nope", "new": "new-pass-123", "confirm": "new-pass-123"},
    )
    assert wrong.status_code == 422 and "current password is wrong" in wrong.text
    form = {"current": MEMBER_PASSWORD, "new": "new-pass-123", "confirm": "new-pass-123"}
    assert vera.ui.post("/account/password", data=form).status_code == 303
    with browser(served) as fresh:
        old = {"username": "vera", "password": MEMBER_PASSWORD, "next": "/"}
        assert fresh.post("/login", data=old).status_code == 401
        assert fresh.post("/login", data={**old, "password": "new-pass-123"}).status_code == 303


def test_logins_of_a_named_user_are_rate_limited(served: Served, team: Team) -> None:
    team("ana", "editor")
    throttle = served.app.state.auth.throttle
    wrong = {"username": "ana", "password": "guess-guess", "next": "/"}
    with browser(served) as guesser:
        for _ in range(throttle.limit):
            assert guesser.post("/login", data=wrong).status_code == 401
        blocked = guesser.post("/login", data={**wrong, "password": MEMBER_PASSWORD})
        assert blocked.status_code == 429 and "Too many failed logins" in blocked.text
    elsewhere = httpx.Client(
        base_url=served.url, transport=httpx.HTTPTransport(local_address="127.0.0.2")
    )
    with elsewhere:  # per user name: ana is blocked from another address too
        right = {**wrong, "password": MEMBER_PASSWORD}
        assert elsewhere.post("/login", data=right).status_code == 429


def test_a_home_from_before_users_keeps_its_admin_login_and_token(tmp_path: Path) -> None:
    home = tmp_path / "home"
    token = "ps_legacy-token-value"
    with session(home) as store:  # what an earlier version kept: one login, one token
        store.set_setting(app_users.LEGACY_TOKEN_KEY, app_users.hash_token(token))
        store.set_setting(app_users.LEGACY_PASSWORD_KEY, app_users.hash_password("old-password"))
    with session(home) as store:  # what the server does when it starts
        auth = Auth.load(store)
        assert auth.has_login
        admin = auth.token_user(store, token)
        assert admin is not None and (admin.name, admin.role) == ("admin", "admin")
        assert auth.login(store, "admin", "old-password") == admin
        assert app_users.has_server_token(store)  # so serve does not print a new one
    with session(home) as store:
        assert store.get_setting(app_users.LEGACY_TOKEN_KEY) is None
        assert store.get_setting(app_users.LEGACY_PASSWORD_KEY) is None


def test_the_cli_adds_users_as_the_hosts_operator(tmp_path: Path) -> None:
    home = tmp_path / "home"

    def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "profilesync.cli", "--home", str(home), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )

    added = cli(
        "user", "add", "ana", "--role", "editor", "--password-stdin", stdin="ana-pass-123\n"
    )
    assert added.returncode == 0 and "ana added as editor" in added.stdout, added.stderr
    assert cli("user", "add", "ana", "--password-stdin", stdin="x" * 9).returncode == 1
    invited = cli("user", "add", "vic")
    assert "/login/invite/" in invited.stdout
    assert "ana" in cli("user", "list").stdout
    token = cli("token", "create", "etl", "--user", "ana")
    assert re.search(r"ps_\S{20,}", token.stdout), token.stdout
    refused = cli("user", "role", "ana", "owner")
    assert refused.returncode == 1 and "error: role 'owner'" in refused.stderr
    assert cli("user", "disable", "ana").returncode == 0
    listed = cli("user", "list", "--json").stdout
    assert '"status": "disabled"' in listed
