"""Members, your account and the audit log: the pages and the API.

- ``/members`` (admins): every user with role and status, the invitation form, role
  changes, disable and enable; ``/api/members`` the same as JSON.
- ``/account`` (everyone): your API tokens (create, shown once; revoke) and your password;
  ``/api/tokens`` the same for the token's own user.
- ``/audit`` (admins and editors): who changed what, newest first; ``/api/audit``.

Who may call what is decided centrally in ``deps`` (``role_needed``); :func:`install`
mounts these routes and the audit trail of every change (``server.audit``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, Field

from profilesync.app import audit as app_audit
from profilesync.app import users as app_users
from profilesync.app.users import ROLES, User
from profilesync.errors import ConfigurationError
from profilesync.server.audit import AuditTrail
from profilesync.server.auth import SESSION_COOKIE
from profilesync.server.deps import (
    current_user,
    get_auth,
    render,
    require_token,
    require_user,
    store_session,
)
from profilesync.server.shown_once import ShownOnce

api = APIRouter(prefix="/api", dependencies=[Depends(require_token)])
pages = APIRouter(dependencies=[Depends(require_user)], include_in_schema=False)
#: seconds a just-made secret (invitation link, token) stays readable by its maker
SHOWN_FOR = 300
_SHOWN: ShownOnce[str] = ShownOnce(SHOWN_FOR)


def install(app: FastAPI) -> None:
    """These routes, and the audit trail around the whole app."""
    app.include_router(api)
    app.include_router(pages)
    app.add_middleware(AuditTrail)


def _me(request: Request) -> User:
    user = current_user(request)
    assert user is not None  # the router's dependency let the request in
    return user


def invite_url(request: Request, code: str) -> str:
    return f"{str(request.base_url).rstrip('/')}/login/invite/{code}"


# -- API ---------------------------------------------------------------------------------------


class MemberIn(BaseModel):
    name: str = Field(examples=["ana"])
    role: str = Field("viewer", examples=list(reversed(ROLES)))
    password: str | None = Field(
        None, description="Set it now; without one an invitation link is returned instead."
    )


class MemberPatch(BaseModel):
    role: str | None = Field(None, examples=["editor"])
    disabled: bool | None = None


class TokenIn(BaseModel):
    label: str = Field(examples=["nightly export"])


@api.get("/members", tags=["users"], summary="Users with role and status (admins)")
def list_members(request: Request) -> list[dict[str, Any]]:
    with store_session(request) as store:
        return [u.to_json() for u in app_users.list_users(store)]


@api.post(
    "/members",
    tags=["users"],
    status_code=201,
    summary="Invite a user (an invitation link), or add one with a password (admins)",
)
def add_member(request: Request, body: MemberIn) -> dict[str, Any]:
    me = _me(request)
    with store_session(request) as store:
        if body.password is not None:
            user = app_users.add_user(store, body.name, body.role, body.password, by=me.name)
            return user.to_json()
        user, code = app_users.invite(store, body.name, body.role, by=me.name)
    return {**user.to_json(), "invite_url": invite_url(request, code)}


@api.patch("/members/{name}", tags=["users"], summary="Change a role, disable or enable (admins)")
def update_member(request: Request, name: str, body: MemberPatch) -> dict[str, Any]:
    with store_session(request) as store:
        user = app_users.get_user(store, name)
        if body.role is not None:
            user = app_users.set_role(store, name, body.role)
        if body.disabled is not None:
            user = app_users.set_disabled(store, name, body.disabled)
        return user.to_json()


@api.get("/tokens", tags=["users"], summary="Your API tokens (never the tokens themselves)")
def list_tokens(request: Request) -> list[dict[str, Any]]:
    with store_session(request) as store:
        return [t.to_json() for t in app_users.list_tokens(store, _me(request).name)]


@api.post(
    "/tokens", tags=["users"], status_code=201, summary="Create an API token (shown only here)"
)
def create_token(request: Request, body: TokenIn) -> dict[str, Any]:
    with store_session(request) as store:
        made, token = app_users.create_token(store, _me(request).name, body.label)
    return {**made.to_json(), "token": token}


@api.delete("/tokens/{token_id}", tags=["users"], status_code=204, summary="Revoke an API token")
def revoke_token(request: Request, token_id: int) -> None:
    me = _me(request)
    with store_session(request) as store:
        owner = None if me.role == "admin" else me.name
        app_users.revoke_token(store, token_id, user=owner)


@api.get("/audit", tags=["audit"], summary="Who changed what, newest first (admins, editors)")
def audit_log(
    request: Request, limit: int = 100, target: str | None = None, kind: str | None = None
) -> list[dict[str, Any]]:
    with store_session(request) as store:
        return [e.to_json() for e in app_audit.entries(store, limit, target, kind)]


# -- pages: members ---------------------------------------------------------------------------

NOTICES = {
    "invited": "Invitation made: send the link below to the person (it is shown once).",
    "role": "Role changed.",
    "disabled": "User disabled: their sessions and API tokens stopped working.",
    "enabled": "User enabled again.",
    "token": "Token created: copy it now, it is not shown again.",
    "revoked": "Token revoked: it stopped working.",
    "password": "Password changed; your other sessions were logged out.",
}


def _page(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    notice = NOTICES.get(request.query_params.get("done", ""))
    me = _me(request)
    shown = _SHOWN.take(me.name, request.query_params.get("shown", ""))
    ctx = {"me": me, "done": notice, "shown": shown, "roles": list(reversed(ROLES)), **context}
    return render(request, template, ctx, status_code=status)


@pages.get("/members")
def members_page(request: Request) -> Response:
    return _members(request)


def _members(request: Request, status: int = 200, **context: Any) -> Response:
    with store_session(request) as store:
        users = app_users.list_users(store)
    return _page(request, "users.html", status, users=users, active="members", **context)


@pages.post("/members")
def invite_page(request: Request, name: str = Form(""), role: str = Form("viewer")) -> Response:
    try:
        with store_session(request) as store:
            user, code = app_users.invite(store, name, role, by=_me(request).name)
    except ConfigurationError as exc:
        return _members(request, 422, error=str(exc), name=name, role=role)
    ticket = _SHOWN.hold(_me(request).name, invite_url(request, code))
    return RedirectResponse(f"/members?done=invited&shown={ticket}#{user.name}", status_code=303)


@pages.post("/members/{name}/role")
def role_page(request: Request, name: str, role: str = Form("")) -> Response:
    return _member_change(request, lambda store: app_users.set_role(store, name, role), "role")


@pages.post("/members/{name}/disable")
def disable_page(request: Request, name: str) -> Response:
    return _member_change(
        request, lambda store: app_users.set_disabled(store, name, True), "disabled"
    )


@pages.post("/members/{name}/enable")
def enable_page(request: Request, name: str) -> Response:
    return _member_change(
        request, lambda store: app_users.set_disabled(store, name, False), "enabled"
    )


def _member_change(request: Request, change: Any, done: str) -> Response:
    try:
        with store_session(request) as store:
            change(store)
    except ConfigurationError as exc:
        return _members(request, 422, error=str(exc))
    return RedirectResponse(f"/members?done={done}", status_code=303)


# -- pages: your account ------------------------------------------------------------------------


@pages.get("/account")
def account_page(request: Request) -> Response:
    return _account(request)


def _account(request: Request, status: int = 200, **context: Any) -> Response:
    with store_session(request) as store:
        tokens = app_users.list_tokens(store, _me(request).name)
    return _page(request, "account.html", status, tokens=tokens, **context)


@pages.post("/account/tokens")
def create_token_page(request: Request, label: str = Form("")) -> Response:
    try:
        with store_session(request) as store:
            _, token = app_users.create_token(store, _me(request).name, label)
    except ConfigurationError as exc:
        return _account(request, 422, token_error=str(exc), label=label)
    return RedirectResponse(
        f"/account?done=token&shown={_SHOWN.hold(_me(request).name, token)}", status_code=303
    )


@pages.post("/account/tokens/{token_id}/revoke")
def revoke_token_page(request: Request, token_id: int) -> Response:
    with store_session(request) as store:
        app_users.revoke_token(store, token_id, user=_me(request).name)
    return RedirectResponse("/account?done=revoked", status_code=303)


@pages.post("/account/password")
def password_page(
    request: Request, current: str = Form(""), new: str = Form(""), confirm: str = Form("")
) -> Response:
    me = _me(request)
    try:
        if new != confirm:
            raise ConfigurationError("the two new passwords differ: type the same one twice")
        with store_session(request) as store:
            app_users.change_password(store, me.name, current, new)
    except ConfigurationError as exc:
        return _account(request, 422, password_error=str(exc))
    get_auth(request).close_sessions_of(me.name, keep=request.cookies.get(SESSION_COOKIE))
    return RedirectResponse("/account?done=password", status_code=303)


# -- pages: audit log -----------------------------------------------------------------------------


@pages.get("/audit")
def audit_page(request: Request, target: str = "", limit: int = 200) -> Response:
    with store_session(request) as store:
        found = app_audit.entries(store, limit, target.strip() or None)
    return _page(request, "audit.html", entries=found, target=target, active="audit")
