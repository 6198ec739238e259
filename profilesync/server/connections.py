"""A connection's page: its settings (secrets never shown), the sources using it, and its
Test, Edit and Delete buttons, each a plain form (no JavaScript needed).

Test renders its answer at once (it changes nothing); Edit tries the changed settings
before saving them, as adding a connection does, and offers "Save anyway" beside the
warehouse's answer when it fails.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData

from profilesync.app import connections
from profilesync.errors import ProfilesyncError
from profilesync.model import Connection
from profilesync.server.deps import render, require_user, store_session, write_session
from profilesync.server.forms import form_data
from profilesync.server.kinds import kind_info

router = APIRouter(dependencies=[Depends(require_user)], include_in_schema=False)

#: the confirmations a redirect to a connection's page may show (keys, so no URL text shows)
NOTICES = {
    "changed": "Connection saved: it connected with the new settings.",
    "changed_untried": "Connection saved without trying it: press Test when the warehouse is up.",
}


@router.get("/connections/{name}")
def connection_page(request: Request, name: str, confirm: str = "") -> Response:
    with store_session(request) as store:
        context = _page(store.get_connection(name), store.list_sources())
    notice = NOTICES.get(request.query_params.get("notice", ""))
    if notice:
        context["notice"] = notice
    return render(request, "connection.html", {**context, "confirm_delete": confirm == "delete"})


@router.get("/connections/{name}/delete")
def delete_confirm(request: Request, name: str) -> Response:
    """The no-JavaScript confirmation: the connection's page with a "Delete it?" panel."""
    return connection_page(request, name, confirm="delete")


@router.post("/connections/{name}/test")
def test(request: Request, name: str) -> Response:
    with store_session(request) as store:
        connection = store.get_connection(name)
    # the warehouse may take its time to answer: the store is not held meanwhile
    result = connections.try_connection(connection)
    with store_session(request) as store:
        context = _page(store.get_connection(name), store.list_sources())
    return render(request, "connection.html", {**context, "test": result})


@router.get("/connections/{name}/edit")
def edit_form(request: Request, name: str) -> Response:
    with store_session(request) as store:
        connection = store.get_connection(name)
    return _edit_page(request, connection, {}, {})


@router.get("/sources/{name}/connection/edit")
def source_connection_edit(request: Request, name: str) -> Response:
    """The Edit page of a source's connection: where the UI fix of an error stored with
    the source's run, which knows only the source, leads."""
    with store_session(request) as store:
        connection = store.get_source(name).connection
    return RedirectResponse(f"/connections/{quote(connection, safe='')}/edit", status_code=303)


@router.post("/connections/{name}/edit")
def edit(request: Request, name: str, form: FormData = Depends(form_data)) -> Response:  # noqa: B008
    anyway = form.get("action") == "save_anyway"
    with store_session(request) as store:
        connection = store.get_connection(name)
    fields = kind_info(connection.kind)["fields"]
    changes = {f["name"]: str(form.get(f"cfg_{f['name']}", "")) for f in fields}
    unset = [str(v) for v in form.getlist("unset")]
    try:
        with write_session(request) as store:
            connections.edit_connection(
                store,
                name,
                changes,
                unset=unset,
                replace=True,
                save_anyway=anyway,
                anyway_hint=connections.UI_ANYWAY,
            )
    except ProfilesyncError as exc:
        posted = {k: v for k, v in changes.items() if not _is_secret(fields, k)}
        return _edit_page(request, connection, posted, {"form": str(exc)}, status=422)
    notice = "changed_untried" if anyway else "changed"
    return RedirectResponse(f"/connections/{name}?notice={notice}", status_code=303)


def _is_secret(fields: list[dict[str, Any]], key: str) -> bool:
    return any(f["name"] == key and f["secret"] for f in fields)


def _page(connection: Connection, sources: list[Any]) -> dict[str, Any]:
    """What connection.html shows: every setting by its label, secrets as set or not."""
    doc = connections.connection_doc(connection, sources)
    info = kind_info(connection.kind)
    rows = []
    for f in info["fields"]:
        if f["secret"]:
            value = "set (never shown)" if f["name"] in doc["secrets_set"] else ""
        else:
            value = doc["config"].get(f["name"], "")
        rows.append({"label": f["label"], "name": f["name"], "value": value, "secret": f["secret"]})
    known = {f["name"] for f in info["fields"]}
    rows += [
        {"label": k, "name": k, "value": v, "secret": False}
        for k, v in doc["config"].items()
        if k not in known
    ]
    return {"active": "sources", "c": doc, "kind": info, "settings": rows}


def _edit_page(
    request: Request,
    connection: Connection,
    posted: dict[str, str],
    errors: dict[str, str],
    status: int = 200,
) -> Response:
    doc = connections.connection_doc(connection)
    values = {**doc["config"], **posted}
    return render(
        request,
        "connection_edit.html",
        {
            "active": "sources",
            "c": doc,
            "kind": kind_info(connection.kind),
            "values": values,
            "errors": errors,
        },
        status,
    )
