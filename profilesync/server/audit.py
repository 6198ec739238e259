"""The server's audit trail: every successful change, whatever the route, is recorded.

:class:`AuditTrail` wraps the app. A request that changes something (POST, PUT, PATCH,
DELETE) and was authenticated (``deps`` left its actor in ``request.state``) is recorded
when it succeeded: a 2xx answer for the API, a redirect for a page's form (a form that
comes back with errors changed nothing). The action comes from the route's template
(:data:`ACTIONS`, else one derived from the template's words, so a route added later is
recorded too); the target is the route's first path parameter (else the body's ``name``);
the detail lists the names of the fields sent, never their values.

The entry is written before the answer leaves, so whoever got the answer can already read
it in the log.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from profilesync.app import audit as app_audit
from profilesync.server.readonly import only_reads

UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: (method, template without ``/api``) -> (action, target kind), where the words mislead
ACTIONS = {
    ("POST", "/sources/new"): ("source.create", "source"),
    ("POST", "/sources/{name}/frequency"): ("source.update", "source"),
    ("DELETE", "/properties/{name}"): ("property.remove", "property"),
    ("POST", "/projects/{name}/rotate"): ("project.rotate_key", "project"),
    ("POST", "/members"): ("user.invite", "user"),
    ("POST", "/account/password"): ("user.password", "user"),
    ("POST", "/account/tokens"): ("token.create", "token"),
    ("POST", "/tokens"): ("token.create", "token"),
    ("DELETE", "/tokens/{token_id}"): ("token.revoke", "token"),
}
_KINDS = {"members": "user", "account": "user", "properties": "property", "query": "query"}
_METHOD_VERBS = {"POST": "create", "PUT": "update", "PATCH": "update", "DELETE": "delete"}
_SKIP_FIELDS = frozenset({"next", "action", "step"})
_BODY_LIMIT = 256 * 1024


def action_of(method: str, template: str) -> tuple[str, str] | None:
    """The action and target kind of a change through ``method`` on route ``template``
    (``("POST", "/api/sources/{name}/pause")`` -> ``("source.pause", "source")``)."""
    if only_reads(method, template):  # a query, a test (``readonly``)
        return None
    path = template.removeprefix("/api")
    if (method, path) in ACTIONS:
        return ACTIONS[(method, path)]
    parts = [p for p in path.split("/") if p]
    if not parts:
        return None
    kind = _KINDS.get(parts[0], parts[0].removesuffix("s"))
    words = [p for p in parts[1:] if not p.startswith("{")]
    verb = words[-1] if words else _METHOD_VERBS.get(method, method.lower())
    return f"{kind}.{verb.replace('-', '_')}", kind


def fields_and_name(body: bytes, content_type: str) -> tuple[list[str], str | None]:
    """The names of the fields a body sets (``config.password``: one level down), and its
    ``name`` or ``label`` value (a name is never a secret)."""
    doc: dict[str, Any] = {}
    try:
        if content_type.startswith("application/json"):
            loaded = json.loads(body or b"{}")
            doc = loaded if isinstance(loaded, dict) else {}
        elif content_type.startswith("application/x-www-form-urlencoded"):
            doc = dict(parse_qsl(body.decode(), keep_blank_values=True))
    except (ValueError, UnicodeDecodeError):
        return [], None
    names = []
    for key, value in doc.items():
        if key in _SKIP_FIELDS or key.startswith("_"):
            continue
        nested = value if isinstance(value, dict) else {}
        names += [f"{key}.{k}" for k in nested] or [key]
    named = doc.get("name") or doc.get("label")
    return names, named if isinstance(named, str) and named else None


def note_change(state: Any, action: str, target_kind: str, target: str | None) -> None:
    """For a route whose change the rules above would miss (a form step that answers
    200, a public route that knows its actor): record this one if the request succeeds."""
    state.audit_note = (action, target_kind, target)


class AuditTrail:
    """ASGI middleware: record each successful, authenticated change (see the module)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in UNSAFE:
            await self.app(scope, receive, send)
            return
        body = bytearray()

        async def receive_copy() -> Message:
            message = await receive()
            if message["type"] == "http.request" and len(body) < _BODY_LIMIT:
                body.extend(message.get("body", b""))
            return message

        async def send_after_record(message: Message) -> None:
            if message["type"] == "http.response.start":
                entry = _entry(scope, message, bytes(body))
                if entry is not None:
                    await anyio.to_thread.run_sync(_write, scope, entry)
            await send(message)

        await self.app(scope, receive_copy, send_after_record)


def _entry(scope: Scope, start: Message, body: bytes) -> dict[str, Any] | None:
    state = scope.get("state", {})
    actor = state.get("actor")
    if actor is None:
        return None
    template = str(getattr(scope.get("route"), "path", scope["path"]))
    status, headers = int(start["status"]), dict(start.get("headers") or [])
    content_type = dict(scope.get("headers") or []).get(b"content-type", b"").decode()
    fields, named = fields_and_name(body, content_type)
    note = state.get("audit_note")
    if note is not None:
        action, kind, target = note
        ok = status < 400
    else:
        found = action_of(scope["method"], template)
        if found is None:
            return None
        action, kind = found
        params = scope.get("path_params") or {}
        target = str(next(iter(params.values()))) if params else named
        ok = _succeeded(template, status, headers.get(b"location", b"").decode())
    if not ok:
        return None
    query = [k for k, _ in parse_qsl(scope.get("query_string", b"").decode())]
    return {
        "actor": actor[0],
        "via": actor[1],
        "action": action,
        "target_kind": kind,
        "target": target,
        "fields": [*fields, *query],
    }


def _succeeded(template: str, status: int, location: str) -> bool:
    """An API call answered 2xx; a page's form redirected (not to the login)."""
    if template.startswith("/api/"):
        return 200 <= status < 300
    return 300 <= status < 400 and not location.startswith("/login")


def _write(scope: Scope, entry: dict[str, Any]) -> None:
    app = scope["app"]
    with app.state.store_lock:
        app_audit.record(app.state.store, **entry)
