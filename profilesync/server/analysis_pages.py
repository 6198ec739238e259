"""The pages of funnels (``/funnels``), retention (``/retention``) and saved cohorts
(``/cohorts``, ``/cohorts/{name}``).

The query pages are GET forms that work without JavaScript (adding or removing a funnel
step is a button that comes back to the same form); the answer is drawn by the bundled
chart library and always tabulated. Cohorts are added with a POST form; deleting one goes
through a confirmation page.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from profilesync.app import analyses
from profilesync.app import events as app_events
from profilesync.app import projects as app_projects
from profilesync.errors import ConfigurationError, ProfilesyncError
from profilesync.server.deps import render, require_user, store_session, templates
from profilesync.server.queryforms import day, filter_rows, filters, message
from profilesync.server.snapshot import analysing

pages = APIRouter(include_in_schema=False)
Texts = Annotated[list[str] | None, Form()]

NAV = [("Funnels", "/funnels"), ("Retention", "/retention"), ("Cohorts", "/cohorts")]
_nav: list[tuple[str, str]] = templates.env.globals["extra_nav"]  # type: ignore[assignment]
_nav.extend(item for item in NAV if item not in _nav)

CONDITION_ROWS = 3
BEHAVIOUR_ROWS = 2
MIN_STEPS = 2
UNITS = (("m", "minutes"), ("h", "hours"), ("d", "days"), ("w", "weeks"))
ORDERS = (("this", "in this order"), ("strict", "strictly in order"), ("any", "in any order"))
#: what a redirect to a cohort page may confirm (a key: no text comes from the URL)
COHORT_NOTICES = {
    "saved": "Cohort saved. Its members are computed whenever it is read.",
    "deleted": "Cohort deleted.",
}


# -- what every form shares -----------------------------------------------------------


def _choices(request: Request) -> dict[str, Any]:
    """Event types, properties, projects and saved cohorts for the pickers."""
    with store_session(request) as store:
        known = app_events.known(store)
        return {
            "choices": known,
            "projects": [p.name for p in app_projects.list_projects(store)],
            "cohort_names": [c["name"] for c in analyses.cohort_list(store)],
            "ops": app_events.OPS,
        }


def _common(params: Any) -> dict[str, Any]:
    """Range, filters, group, groups shown and project, as the form holds them."""
    rows = filter_rows(params)
    return {
        "start": params.get("start", ""),
        "end": params.get("end", ""),
        "group_by": params.get("group_by", ""),
        "limit": params.get("limit", "10"),
        "project": params.get("project", ""),
        "filters": rows,
    }


def _shared_fields(form: dict[str, Any]) -> dict[str, Any]:
    return {
        "start": day(form["start"]),
        "end": day(form["end"]),
        "where": filters(form["filters"]),
        "group_by": app_events.PropertyRef.parse(form["group_by"]) if form["group_by"] else None,
        "limit": int(form["limit"]) if str(form["limit"]).isdigit() else 10,
        "project": form["project"] or None,
    }


def _as_json(value: Any) -> str:
    """JSON for a ``<script type="application/json">`` block."""
    return json.dumps(value).replace("</", "<\\/")


# -- funnels ----------------------------------------------------------------------------


def _funnel_form(params: Any) -> dict[str, Any]:
    steps = params.getlist("step")
    action = params.get("action", "")
    if action == "add_step":
        steps.append("")
    elif (
        action.startswith("remove_step:")
        and action[12:].isdigit()
        and int(action[12:]) < len(steps)
    ):
        del steps[int(action[12:])]
    steps += [""] * (MIN_STEPS - len(steps))
    return {
        **_common(params),
        "steps": steps,
        "window": params.get("window", "7"),
        "unit": params.get("unit", "d"),
        "order": params.get("order", "this"),
        "action": action,
    }


def _funnel_query(form: dict[str, Any]) -> analyses.FunnelQuery:
    steps = [s for s in form["steps"] if s]
    if len(steps) < MIN_STEPS:
        raise ConfigurationError("a funnel needs at least two steps: pick an event for each")
    return analyses.FunnelQuery(
        steps=steps,
        window=f"{form['window']}{form['unit']}",
        order=form["order"],
        **_shared_fields(form),
    )


def funnel_chart(result: dict[str, Any]) -> dict[str, Any]:
    """What the chart draws: conversion (%) per step, one series per group (or overall)."""
    series = result.get("groups") or [{"label": "All users", "other": False, **result}]
    return {
        "steps": [s["event_type"] for s in result["steps"]],
        "series": [
            {
                "label": g["label"],
                "other": g["other"],
                "conversion": [_pct(s["conversion"]) for s in g["steps"]],
                "users": [s["users"] for s in g["steps"]],
            }
            for g in series
        ],
    }


def funnel_tables(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The steps overall, then per group, each step with its median time in words."""
    tables = [{"label": "All users", "other": False, "steps": result["steps"]}]
    tables += result.get("groups", [])
    return [
        {**t, "steps": [{**s, "took": took(s["median_seconds_to_convert"])} for s in t["steps"]]}
        for t in tables
    ]


def took(seconds: float | None) -> str:
    """``42 s``, ``12 min``, ``3 h 05 min``, ``2 d 4 h``."""
    if seconds is None:
        return "-"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min"
    if whole < 86400:
        return f"{whole // 3600} h {whole % 3600 // 60:02d} min"
    return f"{whole // 86400} d {whole % 86400 // 3600} h"


def _pct(share: float | None) -> float | None:
    return None if share is None else round(share * 100, 1)


@pages.get("/funnels")
def funnels_page(request: Request, _: str = Depends(require_user)) -> Response:
    """Steps, window, order, grouping and filters; with two steps chosen, the funnel."""
    form = _funnel_form(request.query_params)
    result, error = None, None
    if not form["action"] and any(form["steps"]):
        try:
            query = _funnel_query(form)
            with analysing(request) as store:
                result = analyses.funnel(store, query)
        except (ValidationError, ProfilesyncError) as exc:
            error = message(exc)
    context = {
        **_choices(request),
        "form": form,
        "result": result,
        "tables": funnel_tables(result) if result else [],
        "chart_json": _as_json(funnel_chart(result)) if result else "null",
        "error": error,
        "units": UNITS,
        "orders": ORDERS,
    }
    return render(request, "funnels.html", context, 422 if error else 200)


# -- retention --------------------------------------------------------------------------


def _retention_form(params: Any) -> dict[str, Any]:
    return {
        **_common(params),
        "start_event": params.get("start_event", ""),
        "return_event": params.get("return_event", ""),
        "interval": params.get("interval", "day"),
        "buckets": params.get("buckets", "7"),
        "mode": params.get("mode", "on"),
    }


def _retention_query(form: dict[str, Any]) -> analyses.RetentionQuery:
    if not form["start_event"] or not form["return_event"]:
        raise ConfigurationError("retention needs a start event and a return event: pick both")
    return analyses.RetentionQuery(
        start_event=form["start_event"],
        return_event=form["return_event"],
        interval=form["interval"],
        buckets=int(form["buckets"]) if str(form["buckets"]).isdigit() else 7,
        mode=form["mode"],
        **_shared_fields(form),
    )


def pooled(cohorts: list[dict[str, Any]], interval: str, today: date) -> dict[str, Any]:
    """All cohorts together: users, and per offset k the share of the users of the cohorts
    that have reached interval k by ``today`` who returned then (None: none has yet)."""
    step = timedelta(days=7 if interval == "week" else 1)
    width = len(cohorts[0]["returned"]) if cohorts else 0
    rates: list[float | None] = []
    for k in range(width):
        reached = [c for c in cohorts if date.fromisoformat(c["start"]) + k * step <= today]
        users = sum(c["users"] for c in reached)
        rates.append(sum(c["returned"][k] for c in reached) / users if users else None)
    return {"users": sum(c["users"] for c in cohorts), "rates": rates}


def retention_tables(result: dict[str, Any], today: date) -> list[dict[str, Any]]:
    """One grid overall, then one per group: the cohorts with users, and all together."""
    groups = [{"label": "All users", "other": False, **result}, *result.get("groups", [])]
    return [
        {
            "label": g["label"],
            "other": g["other"],
            "cohorts": [c for c in g["cohorts"] if c["users"]],
            "all": pooled(g["cohorts"], result["interval"], today),
        }
        for g in groups
    ]


def retention_chart(tables: list[dict[str, Any]], grouped: bool) -> list[dict[str, Any]]:
    """The curves: each group's cohorts together; ungrouped, all and each recent cohort."""
    curves = [
        {"label": t["label"], "other": t["other"], "rates": [_pct(r) for r in t["all"]["rates"]]}
        for t in (tables[1:] if grouped else tables)
    ]
    if not grouped and tables:
        curves += [
            {
                "label": c["start"],
                "other": False,
                "thin": True,
                "rates": [_pct(r) for r in c["rates"]],
            }
            for c in tables[0]["cohorts"][-8:]
        ]
    return curves


@pages.get("/retention")
def retention_page(request: Request, _: str = Depends(require_user)) -> Response:
    """Start and return events, interval, buckets, mode; with both events, the grid."""
    form = _retention_form(request.query_params)
    result, error, tables = None, None, []
    if form["start_event"] or form["return_event"]:
        try:
            query = _retention_query(form)
            with analysing(request) as store:
                result = analyses.retention(store, query)
            tables = retention_tables(result, datetime.now(UTC).date())
        except (ValidationError, ProfilesyncError) as exc:
            error = message(exc)
    chart = retention_chart(tables, bool(result and "groups" in result)) if result else None
    context = {
        **_choices(request),
        "form": form,
        "result": result,
        "tables": tables,
        "chart_json": _as_json(chart),
        "error": error,
    }
    return render(request, "retention.html", context, 422 if error else 200)


# -- cohorts ----------------------------------------------------------------------------


def conditions(definition: dict[str, Any]) -> list[str]:
    """A cohort's conditions in words: ``Title is Manager``, ``did Buy >= 2 in 30d``."""
    cohort = analyses.CohortDefinition.model_validate(definition)
    shown = [f"{f.name} {f.op} {', '.join(str(v) for v in f.values)}".strip() for f in cohort.where]
    return shown + [b.label() for b in cohort.behaviour]


def _cohort_form(
    prop: list[str], op: list[str], value: list[str], did: list[str], event: list[str],
    times: list[str], days: list[str],
) -> dict[str, Any]:  # fmt: skip
    rows = list(zip(prop, op, value, strict=False))
    rows += [("", "is", "")] * (CONDITION_ROWS - len(rows))
    acts = list(zip(did, event, times, days, strict=False))
    acts += [("did", "", "1", "30")] * (BEHAVIOUR_ROWS - len(acts))
    return {"conditions": rows, "behaviour": acts}


def _definition(form: dict[str, Any]) -> analyses.CohortDefinition:
    where = [
        (f"profile:{p}" if not p.startswith("profile:") else p, o, v)
        for p, o, v in form["conditions"]
        if p
    ]
    behaviour = [
        analyses.Behaviour(
            did=did != "did_not",
            event_type=event,
            times=int(times) if times.strip().isdigit() else 1,
            days=int(days) if days.strip().isdigit() else 30,
        )
        for did, event, times, days in form["behaviour"]
        if event
    ]
    return analyses.CohortDefinition(where=filters(where), behaviour=behaviour)


def _cohort_rows(request: Request) -> list[dict[str, Any]]:
    """Every cohort with its conditions in words and its size now."""
    with store_session(request) as store:
        saved = analyses.cohort_list(store)
    rows = []
    with analysing(request) as store:
        for c in saved:
            size = analyses.cohort_show(store, c["name"], 0)["size"]
            rows.append({**c, "conditions": conditions(c["definition"]), "size": size})
    return rows


def _cohorts_page(
    request: Request, name: str = "", form: dict[str, Any] | None = None, error: str = ""
) -> Response:
    context = {
        **_choices(request),
        "cohorts": _cohort_rows(request),
        "name": name,
        "form": form or _cohort_form([], [], [], [], [], [], []),
        "error": error,
    }
    if request.query_params.get("done") in COHORT_NOTICES:
        context["notice"] = COHORT_NOTICES[request.query_params["done"]]
    return render(request, "cohorts.html", context, 422 if error else 200)


@pages.get("/cohorts")
def cohorts_page(request: Request, _: str = Depends(require_user)) -> Response:
    """Saved cohorts with their sizes now, and the form that adds one."""
    return _cohorts_page(request)


@pages.post("/cohorts")
def add_cohort_page(
    request: Request,
    name: str = Form(""),
    cond_prop: Texts = None,
    cond_op: Texts = None,
    cond_value: Texts = None,
    did: Texts = None,
    did_event: Texts = None,
    did_times: Texts = None,
    did_days: Texts = None,
    _: str = Depends(require_user),
) -> Response:
    lists = (cond_prop, cond_op, cond_value, did, did_event, did_times, did_days)
    form = _cohort_form(*(values or [] for values in lists))
    try:
        definition = _definition(form)
        with store_session(request) as store:
            saved = analyses.cohort_add(store, name, definition)
    except (ValidationError, ProfilesyncError) as exc:
        return _cohorts_page(request, name, form, message(exc))
    return RedirectResponse(f"/cohorts/{quote(saved['name'], safe='')}?done=saved", 303)


def _cohort(request: Request, name: str, sample: int) -> dict[str, Any]:
    with analysing(request) as store:
        shown = analyses.cohort_show(store, name, sample)
    return {**shown, "conditions": conditions(shown["definition"])}


@pages.get("/cohorts/{name}")
def cohort_page(request: Request, name: str, _: str = Depends(require_user)) -> Response:
    """A cohort's conditions, size now, some members, exports and uses."""
    context: dict[str, Any] = {"cohort": _cohort(request, name, 20), "quoted": quote(name, safe="")}
    if request.query_params.get("done") in COHORT_NOTICES:
        context["notice"] = COHORT_NOTICES[request.query_params["done"]]
    return render(request, "cohort.html", context)


@pages.get("/cohorts/{name}/delete")
def delete_cohort_confirm(request: Request, name: str, _: str = Depends(require_user)) -> Response:
    """The confirmation: deleting a cohort breaks the filters that name it."""
    context = {"cohort": _cohort(request, name, 0), "quoted": quote(name, safe=""), "confirm": True}
    return render(request, "cohort.html", context)


@pages.post("/cohorts/{name}/delete")
def delete_cohort_page(request: Request, name: str, _: str = Depends(require_user)) -> Response:
    with store_session(request) as store:
        analyses.cohort_delete(store, name)
    return RedirectResponse("/cohorts?done=deleted", status_code=303)
