"""The FastAPI application of ``profilesync serve``: API, pages, login, docs and errors.

``create_app(home)`` opens the home's store once, loads the login and token hashes and
builds the scheduler; the scheduler's thread starts with the app (its lifespan) and stops
before the store closes.

Every response carries the browser-side protections of :class:`SecurityHeaders` (no
framing, a nonce-based Content-Security-Policy, no MIME sniffing, no referrer to other
sites). Cross-site requests riding on the session cookie are refused in ``deps``; failed
logins are rate-limited by ``auth.LoginThrottle``.
"""

from __future__ import annotations

import math
import secrets
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Form, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from profilesync.app import open_store
from profilesync.app import users as app_users
from profilesync.app.sources import NotReleasedError
from profilesync.errors import (
    ConcurrentSyncError,
    ConfigurationError,
    HomeNotWritableError,
    NeedsResyncError,
    NotFoundError,
    ProfilesyncError,
    QuotaExceededError,
    StoreBusyError,
    StoreCorruptedError,
    StoreFullError,
    WarehouseDataError,
    WarehouseUnavailableError,
    ui_view,
)
from profilesync.server import api, deps, events, pages, users, wizard
from profilesync.server import connections as connection_pages
from profilesync.server.alerts import router as alerts_router
from profilesync.server.analyses import router as analyses_router
from profilesync.server.audit import note_change
from profilesync.server.auth import SESSION_COOKIE, SESSION_SECONDS, Auth
from profilesync.server.deps import (
    LoginRequired,
    login_url,
    refuse_cross_site,
    render,
    require_token,
    require_user,
)
from profilesync.server.edit import router as edit_router
from profilesync.server.metrics import router as metrics_router
from profilesync.server.scheduler import RetryPolicy, Scheduler, utcnow

#: HTTP status of each error family; the first match wins (subclasses first)
STATUS: tuple[tuple[type[ProfilesyncError], int], ...] = (
    (NotFoundError, 404),
    (ConcurrentSyncError, 409),
    (NeedsResyncError, 409),
    (QuotaExceededError, 409),
    (StoreBusyError, 503),
    (StoreFullError, 507),
    (StoreCorruptedError, 503),
    (HomeNotWritableError, 503),
    (WarehouseUnavailableError, 503),
    (WarehouseDataError, 422),
    (ConfigurationError, 422),
)
_HTTP_CODES = {
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    429: "too_many_requests",
}


def content_security_policy(nonce: str) -> str:
    """Scripts only from this site (``/static``, ``/docs-assets``) or inline with this
    response's nonce; no plugins, no ``<base>``, forms post only here, and no other site
    may frame a page. Inline ``style`` attributes stay allowed: templates use them and
    they cannot run code."""
    return "; ".join(
        (
            "default-src 'self'",
            f"script-src 'self' 'nonce-{nonce}'",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "font-src 'self' data:",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


class SecurityHeaders:
    """ASGI middleware: the security headers on every HTTP response, pages, API, static
    files and errors alike (a route may set its own value of one; it is kept).

    A fresh CSP nonce per request is put in ``request.state.csp_nonce`` for the templates
    (``deps.ScriptNonce``) and the API docs page. Pure ASGI rather than
    ``BaseHTTPMiddleware``: it only edits the response start, so streaming is untouched.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(16)
        scope.setdefault("state", {})["csp_nonce"] = nonce
        wanted = {
            "X-Frame-Options": "DENY",
            "Content-Security-Policy": content_security_policy(nonce),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
            "Cross-Origin-Opener-Policy": "same-origin",
        }

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in wanted.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def status_of(exc: ProfilesyncError) -> int:
    if isinstance(exc, NotReleasedError):  # a source the warehouse would not let go: its error
        exc = exc.cause
    return next((code for cls, code in STATUS if isinstance(exc, cls)), 400)


def create_app(
    home: Path,
    *,
    tick_seconds: float | None = 15.0,
    clock: Callable[[], datetime] = utcnow,
    retry: RetryPolicy | None = None,
) -> FastAPI:
    """The app for ``home``. ``tick_seconds=None`` schedules nothing (only "Sync now")."""
    store = open_store(home)
    lock = threading.RLock()
    # syncs write through a second connection to the same database (see scheduler.py)
    sync_store = open_store(home)
    scheduler = Scheduler(
        store, lock, clock=clock, retry=retry or RetryPolicy(), sync_store=sync_store
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        scheduler.start(tick_seconds)
        try:
            yield
        finally:
            scheduler.shutdown()
            with scheduler.sync_lock, lock:
                sync_store.close()
                store.close()

    app = FastAPI(
        title="profilesync",
        summary="Keep a profile store in sync with warehouse user tables by change data capture.",
        description=(
            "Every endpoint except `/health` needs `Authorization: Bearer <admin token>` "
            "(printed when `profilesync serve` first started). Errors are "
            '`{"code": "...", "message": "..."}`; secrets are write-only.'
        ),
        version="1",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.home = Path(home)
    app.state.store, app.state.store_lock, app.state.scheduler = store, lock, scheduler
    with lock:
        app.state.auth = Auth.load(store)
    app.add_middleware(SecurityHeaders)
    _errors(app)
    _routes(app)
    _include_routers(app)
    return app


def _include_routers(app: FastAPI) -> None:
    """The API, the pages and the files, in the order their paths must be matched."""
    app.include_router(api.router)
    app.include_router(connection_pages.router)
    app.include_router(events.router)
    app.include_router(metrics_router)
    app.include_router(wizard.router)  # before pages: /sources/new is not a source's page
    app.include_router(alerts_router)
    app.include_router(edit_router)
    app.include_router(analyses_router)  # funnels, retention, cohorts: API and pages
    users.install(app)  # members, account, audit log; the audit trail of every change
    app.include_router(pages.router)
    app.include_router(events.pages)
    app.mount("/static", StaticFiles(directory=str(deps.WEB / "static")), name="static")
    _mount_docs_assets(app)


#: answered as JSON (a 401 with WWW-Authenticate for a stranger), not as pages
MACHINE_PATHS = ("/openapi.json", "/metrics")


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api") or request.url.path in MACHINE_PATHS


def _errors(app: FastAPI) -> None:
    """Errors as each surface speaks them: the API answers ``{"code", "message", "fix":
    {"cli", "ui"}}``, a page shows a title, the cause and the UI's fix (never a command)."""

    @app.exception_handler(ProfilesyncError)
    async def profilesync_error(request: Request, exc: ProfilesyncError) -> Response:
        status = status_of(exc)
        source = request.path_params.get("name") if "/sources/" in request.url.path else None
        if _is_api(request):
            body = {"code": exc.code, "message": str(exc), "fix": exc.fixes(source)}
            return JSONResponse(body, status_code=status)
        view = ui_view(exc, source=source)
        return render(request, "error.html", {**view, "title": _TITLES.get(status)}, status)

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse(login_url(exc.next_url), status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        if _is_api(request) or request.url.path.startswith("/docs"):
            return JSONResponse(
                {"code": code, "message": str(exc.detail)},
                status_code=exc.status_code,
                headers=getattr(exc, "headers", None),
            )
        message = exc.detail
        if exc.status_code == 404 and message == "Not Found":  # no route: say which page
            message = f"There is no page at {request.url.path}."
        page = {"code": code, "message": message, "title": _TITLES.get(exc.status_code)}
        return render(request, "error.html", page, exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = jsonable_encoder(exc.errors(), exclude={"input", "ctx"})
        where = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in errors
        )
        return JSONResponse(
            {"code": "invalid_request", "message": where, "errors": errors}, status_code=422
        )


#: the heading of an error page by its status (else "Something needs attention")
_TITLES = {
    404: "Not found",
    403: "Not allowed",
    405: "Not allowed",
    409: "Needs a person",
    422: "Cannot do that",
    429: "Too many requests",
    503: "Not available right now",
    507: "The disk is full",
}


def _routes(app: FastAPI) -> None:
    @app.get("/health", tags=["server"], summary="Liveness (no authentication)")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(_: str = Depends(require_token)) -> dict[str, Any]:
        return app.openapi()

    @app.get("/docs", include_in_schema=False)
    def docs(request: Request, _: str = Depends(require_user)) -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="profilesync API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/static/favicon.svg",
        )
        # Swagger UI starts from one inline script: it runs under the CSP with our nonce
        started = (
            bytes(page.body)
            .decode()
            .replace("<script>", f'<script nonce="{request.state.csp_nonce}">')
        )
        return HTMLResponse(started)

    _login_routes(app)


def _login_routes(app: FastAPI) -> None:
    """The login form, sign-in (rate-limited, same-site only), sign-out, and the pages of
    an invitation (:func:`_invite_routes`)."""

    @app.get("/login", include_in_schema=False)
    def login_form(request: Request, next: str = "/") -> Response:
        if deps.session_user(request):
            return RedirectResponse(_local(next), status_code=303)
        return render(request, "login.html", {"next": _local(next), "username": ""})

    @app.post("/login", include_in_schema=False, dependencies=[Depends(refuse_cross_site)])
    def login(
        request: Request,
        username: str = Form(""),
        password: str = Form(""),
        next: str = Form("/"),
    ) -> Response:
        auth = deps.get_auth(request)
        address = request.client.host if request.client else ""
        ctx = {"next": _local(next), "username": username}
        wait = auth.throttle.retry_after(address, username)
        if wait is not None:
            return _too_many_logins(request, ctx, wait)
        with deps.store_session(request) as store:
            found = app_users.login_hash(store, username)
        user = app_users.check_login(found, password)  # scrypt is slow: not holding the store
        if user is None:
            auth.throttle.failed(address, username)
            return render(request, "login.html", {**ctx, "error": _WRONG_LOGIN}, 401)
        auth.throttle.succeeded(address, username)
        return _signed_in(request, user.name, _local(next))

    @app.post("/logout", include_in_schema=False, dependencies=[Depends(refuse_cross_site)])
    def logout(request: Request) -> Response:
        deps.get_auth(request).close_session(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    _invite_routes(app)


def _invite_routes(app: FastAPI) -> None:
    """The page where an invited person sets a password, and its form."""

    @app.get("/login/invite/{code}", include_in_schema=False)
    def invitation(request: Request, code: str) -> Response:
        with deps.store_session(request) as store:
            invited = app_users.invited_user(store, code)
        return render(request, "login.html", {"invited": invited, "code": code})

    @app.post(
        "/login/invite/{code}", include_in_schema=False, dependencies=[Depends(refuse_cross_site)]
    )
    def accept(
        request: Request, code: str, password: str = Form(""), confirm: str = Form("")
    ) -> Response:
        with deps.store_session(request) as store:
            invited = app_users.invited_user(store, code)
            try:
                if password != confirm:
                    raise ConfigurationError("the two passwords differ: type the same one twice")
                user = app_users.accept_invite(store, code, password)
            except ConfigurationError as exc:
                ctx = {"invited": invited, "code": code, "error": str(exc)}
                return render(request, "login.html", ctx, 422)
        request.state.actor = (user.name, "ui")
        note_change(request.state, "user.accept_invite", "user", user.name)
        return _signed_in(request, user.name, "/")


def _signed_in(request: Request, name: str, target: str) -> Response:
    """A redirect to ``target`` carrying a new session cookie for ``name``."""
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        deps.get_auth(request).open_session(name),
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


_WRONG_LOGIN = "Wrong user name or password."


def _too_many_logins(request: Request, ctx: dict[str, Any], wait: int) -> Response:
    """429 on the login form, with ``Retry-After`` and the wait in words."""
    throttle = deps.get_auth(request).throttle
    minutes = max(1, math.ceil(wait / 60))
    message = (
        f"Too many failed logins ({throttle.limit} within {throttle.window / 60:g} minutes): "
        f"logging in is paused for this address and user name. Try again in "
        f"{minutes} minute{'s' if minutes > 1 else ''}."
    )
    response = render(request, "login.html", {**ctx, "error": message}, 429)
    response.headers["Retry-After"] = str(wait)
    return response


def _local(target: str) -> str:
    """Only redirect within this site (no ``//host`` or ``http://`` targets)."""
    return target if target.startswith("/") and not target.startswith("//") else "/"


def _mount_docs_assets(app: FastAPI) -> None:
    """Swagger UI's files ship in a package: the /docs page works offline, without a CDN."""
    import fastapi_offline

    assets = Path(fastapi_offline.__file__).parent / "static"
    app.mount("/docs-assets", StaticFiles(directory=str(assets)), name="docs-assets")
