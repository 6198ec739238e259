"""HTTP for alerts: ``/api/alerts`` (list, add, remove, test, deliveries) and the ``/alerts``
page (channels, an add form that works without JavaScript, Test buttons, recent deliveries).

A test calls the receiver outside the store lock (see :mod:`profilesync.app.alerts`), so a
slow receiver holds up no other request.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, Field

from profilesync.app import alerts
from profilesync.errors import ProfilesyncError
from profilesync.server.deps import (
    get_lock,
    get_store,
    render,
    require_token,
    require_user,
    store_session,
    templates,
)

router = APIRouter()
pages = APIRouter(include_in_schema=False)

_nav: list[tuple[str, str]] = templates.env.globals["extra_nav"]  # type: ignore[assignment]
if ("Alerts", "/alerts") not in _nav:
    _nav.append(("Alerts", "/alerts"))

#: the confirmations a redirect may show (a key, so no text is reflected from the URL)
DONE = {
    "added": "Alert channel added. “Test” sends it a message now.",
    "removed": "Alert channel removed.",
}


# -- API ----------------------------------------------------------------------------------


class NewChannel(BaseModel):
    """A webhook (``url``) or an email channel (``to``, ``host``, ...); secrets write-only."""

    name: str = Field(description="e.g. ops-slack")
    kind: str = Field(description="webhook or email")
    url: str | None = Field(None, description="webhook: the URL to POST to")
    to: list[str] | str | None = Field(None, description="email: recipients")
    host: str | None = Field(None, description="email: SMTP server")
    port: int | None = Field(None, description="email: SMTP port (587, 465 with ssl)")
    security: str = Field("starttls", description="email: starttls, ssl or none")
    user: str | None = Field(None, description="email: SMTP login")
    password: str | None = Field(None, description="email: SMTP password (kept encrypted)")
    sender: str | None = Field(None, alias="from", description="email: sender address")
    events: list[str] | str | None = Field(
        None, description=f"default all: {', '.join(alerts.EVENTS)}"
    )

    def config(self) -> dict[str, Any]:
        if self.kind != "email":
            return {"url": self.url}
        return {
            "to": self.to,
            "host": self.host,
            "port": self.port,
            "security": self.security,
            "user": self.user,
            "password": self.password,
            "from": self.sender or self.user,
        }


@router.get("/api/alerts", tags=["alerts"], summary="Alert channels (secrets never shown)")
def list_channels(request: Request, _: str = Depends(require_token)) -> list[dict[str, Any]]:
    with store_session(request) as store:
        return alerts.list_channels(store)


@router.post("/api/alerts", tags=["alerts"], status_code=201, summary="Add an alert channel")
def add_channel(
    request: Request, body: NewChannel, _: str = Depends(require_token)
) -> dict[str, Any]:
    with store_session(request) as store:
        return alerts.add_channel(store, body.name, body.kind, body.config(), body.events)


@router.get(
    "/api/alerts/deliveries",
    tags=["alerts"],
    summary="Delivery attempts, newest first, with answers",
)
def deliveries(
    request: Request, limit: int = 50, _: str = Depends(require_token)
) -> list[dict[str, Any]]:
    with store_session(request) as store:
        return alerts.deliveries(store, limit)


@router.post(
    "/api/alerts/{name}/test",
    tags=["alerts"],
    summary="Send a test message; the delivery with its answer",
)
def test_channel(request: Request, name: str, _: str = Depends(require_token)) -> dict[str, Any]:
    return alerts.send_test(get_store(request), name, lock=get_lock(request))


@router.delete("/api/alerts/{name}", tags=["alerts"], summary="Remove an alert channel")
def remove_channel(request: Request, name: str, _: str = Depends(require_token)) -> dict[str, Any]:
    with store_session(request) as store:
        alerts.remove_channel(store, name)
    return {"removed": name}


# -- pages --------------------------------------------------------------------------------


def _page(
    request: Request, form: dict[str, Any] | None = None, error: str | None = None, **extra: Any
) -> Any:
    with store_session(request) as store:
        channels = alerts.list_channels(store)
        recent = alerts.deliveries(store, 20)
    tested = request.query_params.get("tested", "")
    context = {
        "channels": channels,
        "deliveries": recent,
        "tested": next((d for d in recent if str(d["id"]) == tested), None),
        "done": DONE.get(request.query_params.get("done", "")),
        "events": alerts.EVENTS,
        "form": form or {"kind": "webhook", "security": "starttls", "events": list(alerts.EVENTS)},
        "error": error,
        **extra,
    }
    return render(request, "alerts.html", context, 400 if error else 200)


@pages.get("/alerts")
def alerts_page(request: Request, _: str = Depends(require_user)) -> Response:
    """Channels, the add form and the latest deliveries."""
    return _page(request)


@pages.post("/alerts")
def add_channel_page(
    request: Request,
    name: str = Form(""),
    kind: str = Form("webhook"),
    url: str = Form(""),
    to: str = Form(""),
    host: str = Form(""),
    port: str = Form(""),
    security: str = Form("starttls"),
    user: str = Form(""),
    password: str = Form(""),
    sender: str = Form("", alias="from"),
    events: Annotated[list[str] | None, Form()] = None,
    _: str = Depends(require_user),
) -> Response:
    mail = {"to": to, "host": host, "port": port, "security": security, "user": user}
    config: dict[str, Any] = {"url": url}
    if kind == "email":
        config = {**mail, "password": password, "from": sender or user}
    try:
        with store_session(request) as store:
            alerts.add_channel(store, name, kind, config, events or [])  # none ticked: refused
    except ProfilesyncError as exc:  # the form again, with what was typed (not the password)
        form = {
            "name": name,
            "kind": kind,
            "url": url,
            **mail,
            "from": sender,
            "events": events or [],
        }
        return _page(request, form, str(exc))
    return RedirectResponse("/alerts?done=added", status_code=303)


@pages.post("/alerts/{name}/test")
def test_channel_page(request: Request, name: str, _: str = Depends(require_user)) -> Response:
    delivery = alerts.send_test(get_store(request), name, lock=get_lock(request))
    return RedirectResponse(
        f"/alerts?tested={delivery['id']}#delivery-{delivery['id']}", status_code=303
    )


@pages.get("/alerts/{name}/remove")
def remove_confirm(request: Request, name: str, _: str = Depends(require_user)) -> Response:
    with store_session(request) as store:
        channel = alerts.get_channel(store, name)
    return _page(request, confirm=channel)


@pages.post("/alerts/{name}/remove")
def remove_channel_page(request: Request, name: str, _: str = Depends(require_user)) -> Response:
    with store_session(request) as store:
        alerts.remove_channel(store, name)
    return RedirectResponse("/alerts?done=removed", status_code=303)


router.include_router(pages)  # after the pages are declared: including copies the routes
