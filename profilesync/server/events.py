"""HTTP for events: ingestion, the query API, projects, and three pages.

``router`` holds the JSON endpoints: the ingestion APIs of :mod:`profilesync.server.ingest`
(``/2/httpapi``, ``/batch``, ``/identify``: authenticated by the project's ``api_key`` in
the body), the rest by the admin token; ``pages`` holds the chart page
(``/segmentation``), the user lookup page (``/users``) and the projects page
(``/projects``: create, rotate a key, delete). Both are included by
:func:`profilesync.server.app.create_app`.

Heavy reads run on the store's reader outside the store lock (it reads a snapshot of
its own), so a long query does not hold up ingestion.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, Field, ValidationError

from profilesync.app import events as app_events
from profilesync.app import projects as app_projects
from profilesync.errors import ConfigurationError, ProfilesyncError
from profilesync.model import NAME_PATTERN
from profilesync.server import ingest
from profilesync.server.deps import render, require_token, require_user, store_session, templates
from profilesync.server.queryforms import day, filter_rows, filters, message
from profilesync.server.shown_once import ShownOnce

router = APIRouter()
router.include_router(ingest.router)
pages = APIRouter(include_in_schema=False)
CORS = ingest.CORS

NAV = [("Segmentation", "/segmentation"), ("User lookup", "/users"), ("Projects", "/projects")]
_nav: list[tuple[str, str]] = templates.env.globals["extra_nav"]  # type: ignore[assignment]
_nav.extend(item for item in NAV if item not in _nav)


# -- queries ----------------------------------------------------------------------------


@contextmanager
def _reader(request: Request) -> Iterator[app_events.Reader]:
    """The store's reader, taken under the store lock and used after letting go of it."""
    with ExitStack() as stack:
        with store_session(request) as store:
            reader = stack.enter_context(app_events.reader(store))
        yield reader


def run_segmentation(request: Request, query: app_events.SegmentationQuery) -> dict[str, Any]:
    with store_session(request) as store:
        plan = app_events.plan_segmentation(store, query)
    with _reader(request) as reader:
        return app_events.run_segmentation(plan, reader)


@router.post(
    "/api/query/segmentation",
    tags=["events"],
    summary="Segmentation: a metric of event types over time, filtered and grouped",
    description=(
        "Profile properties (`kind: profile`) are the users' current synced values for every "
        "event; `kind: user` reads the event's own user_properties (values at event time)."
    ),
)
def segmentation(
    request: Request, query: app_events.SegmentationQuery, _: str = Depends(require_token)
) -> dict[str, Any]:
    return run_segmentation(request, query)


@router.get("/api/events/known", tags=["events"], summary="Known event types and properties")
def known(
    request: Request, project: str | None = None, _: str = Depends(require_token)
) -> dict[str, Any]:
    with store_session(request) as store:
        return app_events.known(store, project)


@router.get("/api/users/{user_id}", tags=["events"], summary="A user's profile and recent events")
def user(
    request: Request,
    user_id: str,
    limit: int = Query(50, ge=1, le=1000),
    _: str = Depends(require_token),
) -> dict[str, Any]:
    with store_session(request) as store:
        return app_events.user_lookup(store, user_id, limit)


# -- projects ---------------------------------------------------------------------------


class NewProject(BaseModel):
    name: str = Field(min_length=1, max_length=100, description="e.g. web, ios")


@router.get("/api/projects", tags=["projects"], summary="Projects (API keys are never shown)")
def projects(request: Request, _: str = Depends(require_token)) -> list[dict[str, Any]]:
    with store_session(request) as store:
        return [p.to_json() for p in app_projects.list_projects(store)]


@router.post(
    "/api/projects", tags=["projects"], status_code=201, summary="Create a project and its API key"
)
def create_project(
    request: Request, body: NewProject, _: str = Depends(require_token)
) -> dict[str, Any]:
    with store_session(request) as store:
        project, key = app_projects.create_project(store, body.name)
    return {**project.to_json(), "api_key": key}


@router.post(
    "/api/projects/{name}/rotate-key",
    tags=["projects"],
    summary="Replace a project's API key (the old one stops working)",
)
def rotate_key(request: Request, name: str, _: str = Depends(require_token)) -> dict[str, Any]:
    with store_session(request) as store:
        project, key = app_projects.rotate_key(store, name)
    return {**project.to_json(), "api_key": key}


@router.delete("/api/projects/{name}", tags=["projects"], summary="Delete a project and its events")
def delete_project(request: Request, name: str, _: str = Depends(require_token)) -> dict[str, Any]:
    with store_session(request) as store:
        count = app_projects.delete_project(store, name)
    return {"deleted": name, "events_deleted": count}


# -- pages ------------------------------------------------------------------------------


@pages.get("/segmentation")
def segmentation_page(request: Request, _: str = Depends(require_user)) -> Response:
    """The chart page: a GET form; with an event chosen, the answer drawn and tabulated."""
    params = request.query_params
    with store_session(request) as store:
        choices = app_events.known(store)
        projects = [p.name for p in app_projects.list_projects(store)]
    form = _form(params)
    result, error = None, None
    if params.getlist("event"):
        try:
            result = run_segmentation(request, _query(params))
        except (ValidationError, ProfilesyncError) as exc:
            error = message(exc)
    return render(
        request,
        "segmentation.html",
        {
            "choices": choices,
            "projects": projects,
            "form": form,
            "result": result,
            "result_json": json.dumps(result).replace("</", "<\\/") if result else "null",
            "error": error,
            "ops": app_events.OPS,
        },
    )


def _form(params: Any) -> dict[str, Any]:
    rows = filter_rows(params)
    return {
        "events": params.getlist("event"),
        "metric": params.get("metric", "totals"),
        "property": params.get("property", ""),
        "interval": params.get("interval", "day"),
        "start": params.get("start", ""),
        "end": params.get("end", ""),
        "group_by": params.get("group_by", ""),
        "limit": params.get("limit", "10"),
        "chart": params.get("chart", "line"),
        "project": params.get("project", ""),
        "filters": rows,
    }


def _query(params: Any) -> app_events.SegmentationQuery:
    """The form's fields as a query (``kind:name`` pickers, comma-separated filter values)."""
    form = _form(params)
    return app_events.SegmentationQuery(
        events=form["events"],
        metric=form["metric"],
        property=app_events.PropertyRef.parse(form["property"]) if form["property"] else None,
        interval=form["interval"],
        start=day(form["start"]),
        end=day(form["end"]),
        filters=filters(form["filters"]),
        group_by=app_events.PropertyRef.parse(form["group_by"]) if form["group_by"] else None,
        limit=int(form["limit"]) if str(form["limit"]).isdigit() else 10,
        project=form["project"] or None,
    )


@pages.get("/users")
def user_page(request: Request, user_id: str = "", _: str = Depends(require_user)) -> Response:
    """A user's current profile next to their latest events."""
    found, error = None, None
    if user_id.strip():
        try:
            with store_session(request) as store:
                found = app_events.user_lookup(store, user_id.strip(), 100)
        except ProfilesyncError as exc:
            error = str(exc)
    return render(request, "user_lookup.html", {"user_id": user_id, "found": found, "error": error})


# -- projects page ----------------------------------------------------------------------

#: the confirmations a redirect to /projects may show (a key, so no text comes from the URL)
PROJECT_NOTICES = {
    "created": "Project created. Copy its API key now: it is shown only this once.",
    "rotated": "New API key made; the old one no longer works. Copy it now: it is shown only this once.",
    "deleted": "Project deleted with all its events.",
    "key_gone": "That API key was shown once and is not kept; “Rotate key” makes a new one.",
}

#: a fresh key waits here (never in the URL) for the one page view that shows it
FRESH_SECONDS = 600
_FRESH: ShownOnce[tuple[str, str]] = ShownOnce(FRESH_SECONDS)


def _project_rows(request: Request) -> list[dict[str, Any]]:
    """Each project with its stored event count and last arrival (one grouped scan)."""
    with store_session(request) as store:
        projects = app_projects.list_projects(store)
    with _reader(request) as reader:
        stats = app_projects.event_counts(store, reader)
    rows = []
    for p in projects:
        count, last = stats.get(p.id, (0, None))
        rows.append({**p.to_json(), "events": count, "last": last})
    return rows


def _projects_page(
    request: Request,
    user: str,
    *,
    name: str = "",
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    params = request.query_params
    fresh = _FRESH.take(user, params["key"]) if "key" in params else None
    notice = PROJECT_NOTICES.get(params.get("notice", ""))
    if "key" in params and fresh is None:
        notice = PROJECT_NOTICES["key_gone"]
    response = render(
        request,
        "projects.html",
        {
            "projects": _project_rows(request),
            "fresh": fresh,
            "notice": notice,
            "name": name,
            "errors": errors or {},
            "base_url": str(request.base_url).rstrip("/"),
        },
        status,
    )
    response.headers["Cache-Control"] = "no-store"  # the back button must not bring a key back
    return response


def _to_key(user: str, project: str, key: str, notice: str) -> RedirectResponse:
    ticket = _FRESH.hold(user, (project, key))
    return RedirectResponse(f"/projects?notice={notice}&key={ticket}", status_code=303)


@pages.get("/projects")
def projects_page(request: Request, user: str = Depends(require_user)) -> Response:
    """Projects with their event counts; a key just made is shown here once."""
    return _projects_page(request, user)


@pages.post("/projects")
def create_project_page(
    request: Request, name: str = Form(""), user: str = Depends(require_user)
) -> Response:
    name = name.strip()
    if not NAME_PATTERN.fullmatch(name):
        error = (
            f"{name!r} cannot be a project name: use up to 63 letters, digits, “_”, “-” or “.”, "
            "starting with a letter or digit, e.g. web or ios"
            if name
            else "a project needs a name, e.g. web or ios"
        )
        return _projects_page(request, user, name=name, errors={"name": error}, status=422)
    try:
        with store_session(request) as store:
            project, key = app_projects.create_project(store, name)
    except ConfigurationError as exc:
        return _projects_page(request, user, name=name, errors={"name": str(exc)}, status=422)
    return _to_key(user, project.name, key, "created")


@pages.get("/projects/{name}/rotate")
def rotate_key_confirm(request: Request, name: str, _: str = Depends(require_user)) -> Response:
    """The confirmation: a new key stops the old one at once (works without JavaScript)."""
    with store_session(request) as store:
        project = app_projects.get_project(store, name)
    row = next(r for r in _project_rows(request) if r["name"] == project.name)
    return render(request, "projects.html", {"rotate": row})


@pages.post("/projects/{name}/rotate")
def rotate_key_page(request: Request, name: str, user: str = Depends(require_user)) -> Response:
    with store_session(request) as store:
        project, key = app_projects.rotate_key(store, name)
    return _to_key(user, project.name, key, "rotated")


@pages.get("/projects/{name}/delete")
def delete_project_confirm(request: Request, name: str, _: str = Depends(require_user)) -> Response:
    """The confirmation: what deleting takes with it."""
    with store_session(request) as store:
        project = app_projects.get_project(store, name)
    row = next(r for r in _project_rows(request) if r["name"] == project.name)
    return render(request, "projects.html", {"confirm": row})


@pages.post("/projects/{name}/delete")
def delete_project_page(request: Request, name: str, _: str = Depends(require_user)) -> Response:
    with store_session(request) as store:
        app_projects.delete_project(store, name)
    return RedirectResponse("/projects?notice=deleted", status_code=303)
