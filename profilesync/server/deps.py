"""What every route needs: the store (behind one lock), authentication and the templates.

The app holds one :class:`~profilesync.app.Store` in ``app.state.store``. A DuckDB connection is not
safe to use from two threads at once, so every use goes through ``app.state.store_lock``
(an ``RLock``): ``with store_session(request) as store: ...``. Syncs run on the
scheduler's own connection to the same database, so they do not hold this lock: readers
see each sync when it commits. Changes to a source (pause, frequency, mapping, delete)
use :func:`write_session`, which also waits for a running sync.

API routes depend on :func:`require_token`: ``Authorization: Bearer <API token>`` (each
user's own tokens), or the UI's session cookie for the UI's own scripts, else 401 JSON.
HTML pages depend on :func:`require_user`: the login session, else a 303 to ``/login``.
Both also check the user's role against the route (:func:`role_needed`), so every route,
including one added later, is covered: a viewer changes nothing, only an admin manages
users. They leave the actor in ``request.state`` for the audit log (``server.users``).

A browser attaches the session cookie to requests other sites make it send, so whatever
the cookie authenticates must come from our own pages: a cookie-authenticated API call
from another site, and a state-changing page request (POST, PUT, PATCH, DELETE) from
another site, are refused with 403 (:func:`refuse_cross_site`). The site is judged by
``Origin``, else ``Referer``; a request with neither is not a browser's cross-site request.
A bearer token is not sent by browsers on their own, so token calls are not checked, and
``/2/httpapi`` (project API keys) is meant to be posted to from other sites.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote as url_quote
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.templating import Jinja2Templates
from jinja2.ext import Extension

from profilesync.app import Store
from profilesync.app.users import User
from profilesync.errors import ProfilesyncError, ui_view, without_cli_advice
from profilesync.model import format_frequency
from profilesync.server.auth import SESSION_COOKIE, Auth
from profilesync.server.readonly import NOT_CHANGES

WEB = Path(__file__).parent / "web"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_SCRIPT_TAG = re.compile(r"<script(?=[\s>])", re.I)
_DEFAULT_PORTS = frozenset({80, 443})


class ScriptNonce(Extension):
    """Gives every ``<script>`` written in a template the response's CSP nonce.

    The Content-Security-Policy allows scripts from this site and inline scripts carrying
    the nonce of the response (see ``app.SecurityHeaders``). This rewrites template
    *source*, before compiling: text that reaches a page through a variable is escaped and
    never gets a nonce, so an injected script still cannot run.
    """

    def preprocess(self, source: str, name: str | None, filename: str | None = None) -> str:
        return _SCRIPT_TAG.sub('<script nonce="{{ csp_nonce }}"', source)


def _nonce_context(request: Request) -> dict[str, Any]:
    return {"csp_nonce": getattr(request.state, "csp_nonce", "")}


templates = Jinja2Templates(directory=str(WEB / "templates"), context_processors=[_nonce_context])
templates.env.add_extension(ScriptNonce)
#: more nav links (label, href) for every page; features append to it when they mount
templates.env.globals["extra_nav"] = []

_bearer = HTTPBearer(
    auto_error=False,
    description="An API token: your own (Account page or `profilesync token create`), or the "
    "admin token printed when `profilesync serve` first started.",
)


class LoginRequired(Exception):
    """Raised by :func:`require_user`; the app answers with a redirect to the login form."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


def get_store(request: Request) -> Store:
    """The app's store. Use it only inside :func:`store_session` (or holding the lock)."""
    store: Store = request.app.state.store
    return store


def get_lock(request: Request) -> threading.RLock:
    lock: threading.RLock = request.app.state.store_lock
    return lock


@contextmanager
def store_session(request: Request) -> Iterator[Store]:
    """Hold the store lock and yield the store."""
    with get_lock(request):
        yield get_store(request)


@contextmanager
def write_session(request: Request) -> Iterator[Store]:
    """Like :func:`store_session`, and no sync runs meanwhile: for changes to a source's row
    or profile table (pause, frequency, mapping, delete), which a sync's transaction also
    writes. Lock order: the scheduler's sync lock, then the store lock."""
    with get_scheduler(request).sync_lock, get_lock(request):
        yield get_store(request)


def get_auth(request: Request) -> Auth:
    auth: Auth = request.app.state.auth
    return auth


def get_scheduler(request: Request) -> Any:
    return request.app.state.scheduler


def current_user(request: Request) -> User | None:
    """The signed-in user of this request (by token or session), looked up once."""
    if "user" not in request.state._state:
        with store_session(request) as store:
            request.state.user = get_auth(request).session_user(
                store, request.cookies.get(SESSION_COOKIE)
            )
    found: User | None = request.state.user
    return found


def session_user(request: Request) -> str | None:
    """The name of the user signed in to the UI, or None."""
    user = current_user(request)
    return user.name if user else None


def is_cross_site(request: Request) -> bool:
    """Whether the page that sent ``request`` (its ``Origin``, else its ``Referer``) is on
    another host or port than this server. ``Origin: null`` (sandboxed frames, privacy
    redirects) counts as another site; no header at all is a non-browser client."""
    sender = request.headers.get("origin") or request.headers.get("referer")
    if not sender:
        return False
    parts = urlsplit(sender)
    return parts.scheme == "" or _host_port(parts.netloc) != _host_port(
        request.headers.get("host", "")
    )


def _host_port(netloc: str) -> tuple[str, int | None]:
    """``("example.com", None)`` for ``example.com``, ``example.com:443`` or ``:80``.

    The scheme is left out on purpose: behind a TLS-terminating proxy the server sees
    ``http`` while the browser's ``Origin`` says ``https``, for the same site."""
    try:
        parts = urlsplit(f"//{netloc}")
        port = parts.port
    except ValueError:  # a malformed port or IPv6 literal: matches nothing
        return ("", -1)
    return (parts.hostname or "", None if port in _DEFAULT_PORTS else port)


def refuse_cross_site(request: Request) -> None:
    """403 for a state-changing request that another site's page made a browser send."""
    if request.method in UNSAFE_METHODS and is_cross_site(request):
        raise HTTPException(
            status_code=403,
            detail="cross-site request refused: use this server's own pages (or the API "
            "with a bearer token)",
        )


def require_token(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
) -> str:
    """API auth: a user's bearer token, or the UI's session from its own pages (a session
    cookie sent from another site is refused whatever the method); then the role check."""
    if credentials is not None:
        with store_session(request) as store:
            user = get_auth(request).token_user(store, credentials.credentials)
        if user is not None:
            request.state.user = user
            return _authorized(request, user, "api")
    user = current_user(request) if credentials is None else None
    if user:
        if is_cross_site(request):
            raise HTTPException(
                status_code=403,
                detail="cross-site request refused: the session cookie opens the API only "
                "for this server's own pages; other clients use a bearer token",
            )
        return _authorized(request, user, "ui")
    raise HTTPException(
        status_code=401,
        detail=(
            "this endpoint needs `Authorization: Bearer <API token>`: create one on your Account "
            "page or with `profilesync token create`; the admin token was printed when "
            "`profilesync serve` first started (`profilesync serve --new-token` makes a new one)"
        ),
        headers={"WWW-Authenticate": "Bearer"},
    )


def require_user(request: Request) -> str:
    """Page auth: the login session, else a redirect to ``/login?next=<this page>``."""
    user = current_user(request)
    if user:
        refuse_cross_site(request)
        return _authorized(request, user, "ui")
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    raise LoginRequired(target)


def login_url(next_url: str) -> str:
    return f"/login?next={url_quote(next_url, safe='')}"


# -- roles ----------------------------------------------------------------------------------

#: route templates (and everything under them) that need more than the viewer's role
ROLE_ROUTES = (
    ("/api/members", "admin"),
    ("/members", "admin"),
    ("/api/audit", "editor"),
    ("/audit", "editor"),
)
#: POSTs a viewer may still make (queries, tests, their own account): ``readonly.NOT_CHANGES``
#: pages that exist only to make a change (a form to fill in, a confirmation)
_CHANGE_PAGE = re.compile(r"/(new|edit|delete)$")


def route_template(request: Request) -> str:
    """The matched route's path template (``/api/sources/{name}``), else the path."""
    return str(getattr(request.scope.get("route"), "path", request.url.path))


def role_needed(method: str, template: str) -> str:
    """The least role that may call ``method`` on the route ``template``."""
    for prefix, role in ROLE_ROUTES:
        if template == prefix or template.startswith(prefix + "/"):
            return role
    if method in UNSAFE_METHODS:
        found = NOT_CHANGES.get((method, template))
        return found.role if found else "editor"
    if method == "GET" and _CHANGE_PAGE.search(template):
        return "editor"
    return "viewer"


def _authorized(request: Request, user: User, via: str) -> str:
    """``user``'s name if their role allows this route, else 403; notes the actor."""
    needed = role_needed(request.method, route_template(request))
    if not user.at_least(needed):
        raise HTTPException(status_code=403, detail=_refusal(user, needed))
    request.state.actor = (user.name, via)
    return user.name


def _refusal(user: User, needed: str) -> str:
    if needed == "admin":
        return (
            f"only an admin manages users; {user.name} is {_a(user.role)}: "
            "ask an admin to do it or to make you one"
        )
    return (
        f"{user.name} is {_a(user.role)}, who can read everything but change nothing: "
        "ask an admin for the editor role"
    )


def _a(role: str) -> str:
    return f"an {role}" if role[0] in "aeiou" else f"a {role}"


class ViewerForms(Extension):
    """Hides every ``<form method="post">`` of a template from a viewer (its buttons would
    only be refused): the form gets ``hidden`` when ``viewer`` is true. The log-out form and
    forms marked ``data-any-role`` (your own account) stay. Links to a page that exists only
    to make a change (``.../new``, ``.../edit``, ``.../delete``) are hidden the same way. The
    server refuses a viewer's change whatever the page shows; this keeps pages from offering it."""

    _FORM = re.compile(
        r'<form(?=[^>]*\bmethod="post")(?![^>]*\bdata-any-role\b)(?![^>]*action="/log(?:out|in)")',
        re.I,
    )
    _CHANGE_LINK = re.compile(r'<a(?=[^>]*\bhref="[^"]*/(?:new|edit|delete)[?"])', re.I)

    def preprocess(self, source: str, name: str | None, filename: str | None = None) -> str:
        source = self._FORM.sub("<form{% if viewer %} hidden{% endif %}", source)
        return self._CHANGE_LINK.sub("<a{% if viewer %} hidden{% endif %}", source)


def _role_context(request: Request) -> dict[str, Any]:
    """``role`` and ``viewer`` for every page (nothing for a page without a login)."""
    user = request.state._state.get("user")
    return {"role": user.role if user else None, "viewer": bool(user and user.role == "viewer")}


templates.env.add_extension(ViewerForms)
templates.context_processors.append(_role_context)


def render(
    request: Request, name: str, context: dict[str, Any] | None = None, status_code: int = 200
) -> Any:
    """A page with the signed-in user and any notice from the query string."""
    ctx = {
        "user": session_user(request),
        "notice": NOTICES.get(request.query_params.get("notice", "")),
    }
    ctx.update(context or {})
    return templates.TemplateResponse(request, name, ctx, status_code=status_code)


#: the short confirmations a redirect may show (a key, so no text is reflected from the URL)
NOTICES = {
    "created": "Source saved. Its first sync starts within a minute; “Sync now” starts it at once.",
    "queued": "Sync queued; this page refreshes until it finishes.",
    "already": "A sync of this source is already queued or running; this page refreshes until it finishes.",
    "resync": "Resync queued: the current table will be diffed against the store.",
    "paused": "Paused: scheduled syncs are off until you resume.",
    "resumed": "Resumed: scheduled syncs are on again.",
    "frequency": "Frequency changed.",
    "edited": "Source saved. If it needs a back-fill, its next sync is a resync; “Resync” runs it now.",
    "deleted": "Source deleted with every property it gave to profiles.",
    "property_removed": "Property removed from its source's mapping and from the store.",
    "connection_deleted": "Connection deleted.",
}


# -- template filters -----------------------------------------------------------------


def _when(value: Any) -> str:
    """An ISO time as ``2024-05-01 12:00 UTC (3 min ago)``."""
    if not value:
        return "never"
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    delta = (moment - datetime.now(UTC)).total_seconds()
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC ({_relative(delta)})"


def _relative(seconds: float) -> str:
    if abs(seconds) < 1:
        return "now"
    size = abs(seconds)
    for unit, span in (("d", 86400), ("h", 3600), ("min", 60)):
        if size >= span:
            text = f"{int(size // span)} {unit}"
            break
    else:
        text = f"{int(size)} s"
    return f"in {text}" if seconds > 0 else f"{text} ago"


def _number(value: Any) -> str:
    return "-" if value is None else f"{int(value):,}"


def _duration(seconds: Any) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.2f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


def _sql(expression: Any) -> str:
    """``"title"`` -> ``title``: a plain quoted column reads better without its quotes."""
    text = str(expression or "")
    inner = text[1:-1]
    if len(text) > 2 and text[0] == text[-1] == '"' and '"' not in inner:
        return inner
    return text


def _percent(share: float) -> str:
    if share == 0:
        return "0%"
    return "< 0.01%" if share < 0.0001 else f"{share * 100:.2f}%"


def _date(value: Any) -> str:
    """An ISO time as ``2024-05-01 12:00 UTC`` (the relative form is in ``when``)."""
    if not value:
        return "-"
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S}"


def _next_run(value: Any) -> str:
    """When a source syncs next: a time ahead, "due now" (up to a minute late: the
    scheduler looks every few seconds), or "overdue since ..." (the server was busy or down)."""
    if not value:
        return "none"
    moment = _moment(value)
    late = (datetime.now(UTC) - moment).total_seconds()
    if late < 0:
        return _when(moment)
    if late < 60:
        return "due now"
    return f"overdue since {moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC ({_relative(-late)})"


def _moment(value: Any) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


#: how each kind's checkpoint position reads ({} is the position)
_POSITIONS = {
    "delta": "version {} of the Delta table",
    "databricks": "version {} of the Delta table",
    "ducklake": "snapshot {} of the DuckLake catalog",
    "postgres": "LSN {}",
}
#: kinds whose position is the time of a snapshot, or of the changes read up to
_TIMED = {"duckdb": "snapshot of {}", "snowflake": "changes up to {}"}


def _checkpoint(position: Any, kind: str = "") -> str:
    """A checkpoint's position in words: "version 12 of the Delta table", "LSN 0/16B3748",
    "snapshot of 2026-11-29 10:00 UTC" (the raw value goes in a title beside it)."""
    if position in (None, ""):
        return "none"
    if kind in _TIMED:
        try:
            moment = _moment(position)
        except ValueError:
            return str(position)
        return _TIMED[kind].format(f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC")
    return _POSITIONS.get(kind, "{}").format(position)


def _value(value: Any) -> str:
    """A profile or preview value as a person reads it: text without JSON quotes, numbers
    and booleans as JSON writes them, null as "null"."""
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str, ensure_ascii=False)


def _ui_text(message: Any) -> str:
    """A message without its advice for the command line (the CLI cannot run next to
    ``serve``): for checks and errors that reach a page as text."""
    return without_cli_advice(str(message or ""))


def _problem(error: Any, code: str | None = None, source: str | None = None) -> dict[str, Any]:
    """What a page shows of an error, raised or stored (``{"message", "fix", "code"}``)."""
    return ui_view(error if isinstance(error, ProfilesyncError) else str(error or ""), code, source)


templates.env.globals["problem_of"] = _problem
templates.env.filters.update(
    when=_when,
    next_run=_next_run,
    checkpoint=_checkpoint,
    value=_value,
    ui_text=_ui_text,
    date=_date,
    number=_number,
    frequency=format_frequency,
    duration=_duration,
    sql=_sql,
    percent=_percent,
)
