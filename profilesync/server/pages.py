"""The web UI's pages (server-rendered) and the form posts behind their buttons.

Every action answers with a 303 back to a page (post/redirect/get), so reloading never
repeats it; errors render beside what they concern or on the error page.
"""

from __future__ import annotations

import calendar
from datetime import date, datetime
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from markupsafe import Markup, escape

from profilesync.errors import ConcurrentSyncError, NotFoundError, ProfilesyncError
from profilesync.model import Connection, Source, parse_frequency
from profilesync.server import frequencies, views
from profilesync.server.deps import (
    get_scheduler,
    render,
    require_user,
    store_session,
    write_session,
)
from profilesync.server.kinds import all_kinds

router = APIRouter(dependencies=[Depends(require_user)], include_in_schema=False)


def _back(path: str, notice: str) -> RedirectResponse:
    return RedirectResponse(f"{path}?notice={notice}", status_code=303)


@router.get("/")
def overview(request: Request) -> Response:
    scheduler = get_scheduler(request)
    with store_session(request) as store:
        sources = store.list_sources()
        docs = [views.source_doc(store, scheduler, s) for s in sources]
        connections = [views.connection_doc(c, sources) for c in store.list_connections()]
    return render(
        request,
        "overview.html",
        {"active": "sources", "sources": docs, "connections": connections, "kinds": all_kinds()},
    )


# -- one source ---------------------------------------------------------------------------


@router.get("/sources/{name}")
def source_page(request: Request, name: str) -> Response:
    return _source_page(request, name)


def _source_page(request: Request, name: str, error: ProfilesyncError | None = None) -> Response:
    """The source's page; ``error``: a change just refused, shown at the top."""
    scheduler = get_scheduler(request)
    with store_session(request) as store:
        source = store.get_source(name)
        doc = views.source_doc(store, scheduler, source)
        runs = [_with_duration(r) for r in store.runs(name, limit=20)]
        last_rejected = next((r for r in runs if r["rejected"]), None)
        rejected = store.rejected_rows(last_rejected["id"], 20) if last_rejected else []
        connection = _judged_connection(store, source)
    # the warehouse is asked outside the store lock: a slow one must not stall other requests
    choices = _frequency_choices(connection, source, doc)
    return render(
        request,
        "source.html",
        {
            "active": "sources",
            "s": doc,
            "runs": runs,
            "rejected_run": last_rejected,
            "rejected": rejected,
            "choices": choices,
            "error": error,
        },
    )


def _judged_connection(store: Any, source: Source) -> Connection | None:
    """The connection whose warehouse judges the source's frequencies (None: nothing to judge)."""
    if source.strategy != "cdc":
        return None
    try:
        found: Connection = store.get_connection(source.connection)
    except ProfilesyncError:  # a page still shows, with every frequency offered
        return None
    return found


def _frequency_choices(
    connection: Connection | None, source: Source, doc: dict[str, Any]
) -> list[dict[str, Any]]:
    """As in "Add a source"; a warehouse that cannot be reached disables nothing here
    (changing the frequency checks it again), a diff source has no retention to judge."""
    if connection is not None:
        return frequencies.offered_judged(connection, source, doc["frequency_seconds"])
    return frequencies.unchecked(doc["frequency_seconds"])


def _with_duration(run: dict[str, Any]) -> dict[str, Any]:
    start, end = run.get("started_at"), run.get("finished_at")
    seconds = (
        (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
        if start and end
        else None
    )
    return {**run, "duration": seconds}


@router.post("/sources/{name}/sync")
def sync_now(request: Request, name: str, resync: bool = Form(False)) -> Response:
    try:
        get_scheduler(request).sync_now(name, resync=resync)
    except ConcurrentSyncError:
        return _back(f"/sources/{name}", "already")
    return _back(f"/sources/{name}", "resync" if resync else "queued")


@router.post("/sources/{name}/pause")
def pause(request: Request, name: str) -> Response:
    with write_session(request) as store:
        store.update_source(name, paused=True)
    return _back(f"/sources/{name}", "paused")


@router.post("/sources/{name}/resume")
def resume(request: Request, name: str) -> Response:
    get_scheduler(request).resume(name)
    return _back(f"/sources/{name}", "resumed")


@router.post("/sources/{name}/frequency")
def frequency(request: Request, name: str, frequency: str = Form(...)) -> Response:
    try:
        seconds = parse_frequency(frequency)
        with write_session(request) as store:
            views.check_frequency(store, store.get_source(name), seconds)
            store.update_source(name, frequency_seconds=seconds)
    except ProfilesyncError as exc:
        return _source_page(request, name, error=exc)
    return _back(f"/sources/{name}", "frequency")


@router.get("/sources/{name}/delete")
def delete_confirm(request: Request, name: str) -> Response:
    with store_session(request) as store:
        source = store.get_source(name)
        lines = views.delete_explanation(store, source)
    return render(
        request, "source_delete.html", {"active": "sources", "name": name, "lines": lines}
    )


@router.post("/sources/{name}/delete")
def delete(request: Request, name: str) -> Response:
    with write_session(request) as store:
        views.delete_source(store, get_scheduler(request), name)
    return _back("/", "deleted")


@router.get("/sources/{name}/runs/{run_id}")
def run_page(request: Request, name: str, run_id: int) -> Response:
    with store_session(request) as store:
        store.get_source(name)
        run = next((r for r in store.runs(name, limit=1000) if r["id"] == run_id), None)
        rows = store.rejected_rows(run_id, 1000)
    if run is None:
        raise NotFoundError(f"source {name!r} has no run {run_id}")
    return render(
        request, "run.html", {"active": "sources", "name": name, "run": run, "rows": rows}
    )


@router.post("/connections/{name}/delete")
def delete_connection(request: Request, name: str) -> Response:
    with store_session(request) as store:
        store.delete_connection(name)
    return _back("/", "connection_deleted")


# -- profiles, properties, usage ----------------------------------------------------------------


@router.get("/profiles")
def profiles(request: Request, user_id: str = "") -> Response:
    profile, error = None, None
    if user_id.strip():
        try:
            with store_session(request) as store:
                profile = store.get_profile(user_id.strip(), detail=True)
        except ProfilesyncError as exc:
            error = str(exc)
    return render(
        request,
        "profiles.html",
        {"active": "profiles", "user_id": user_id, "profile": profile, "error": error},
    )


@router.get("/properties")
def properties(request: Request) -> Response:
    with store_session(request) as store:
        rows = views.properties(store)
    return render(request, "properties.html", {"active": "properties", "properties": rows})


@router.post("/properties/{name}/remove")
def remove_property(request: Request, name: str, confirm: str = Form("")) -> Response:
    """Without ``confirm=yes`` (a browser without script included), a page that says what
    the removal does and asks; only its own form removes."""
    from profilesync.app.properties import removal

    if confirm != "yes":
        with store_session(request) as store:
            found = removal(store, name)
        return render(request, "property_remove.html", {"active": "properties", "p": found})
    with write_session(request) as store:
        views.remove_property(store, name)
    return _back("/properties", "property_removed")


@router.get("/usage")
def usage(request: Request) -> Response:
    with store_session(request) as store:
        data = views.usage(store)
    share = data["used"] / data["limit"] if data["limit"] else 0
    colors = {s["source"]: PALETTE[i % len(PALETTE)] for i, s in enumerate(data["sources"])}
    return render(
        request,
        "usage.html",
        {
            "active": "usage",
            "u": data,
            "share": share,
            "colors": colors,
            "chart": usage_chart(data, colors),
        },
    )


PALETTE = ("#3451c6", "#e07a1f", "#1d7a46", "#a23b9c", "#0f8a9d", "#b42318", "#6b7280")


def usage_chart(
    usage: dict[str, Any], colors: dict[str, str], width: int = 760, height: int = 240
) -> Markup:
    """This month's operations per day, stacked by source, as an inline SVG (no scripts)."""
    year, month = (int(x) for x in usage["month"].split("-"))
    days = calendar.monthrange(year, month)[1]
    per_day: dict[int, list[tuple[str, int]]] = {}
    for row in usage["days_by_source"]:
        per_day.setdefault(date.fromisoformat(row["day"]).day, []).append(
            (row["source"], row["operations"])
        )
    top = max([sum(v for _, v in rows) for rows in per_day.values()] + [1])
    left, bottom, bar_w = 64, 24, (width - 72) / days
    plot_h, base = height - bottom - 14, height - bottom
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="Operations per day in {usage["month"]}, by source">',
        f'<text x="{left - 6}" y="18" class="axis" text-anchor="end">{top:,}</text>',
        f'<text x="{left - 6}" y="{base}" class="axis" text-anchor="end">0</text>',
        f'<line x1="{left}" y1="{base}" x2="{width - 8}" y2="{base}" class="base"/>',
    ]
    for day in range(1, days + 1):
        x, y = left + (day - 1) * bar_w, float(base)
        for source, value in per_day.get(day, []):
            h = plot_h * value / top
            y -= h
            label = escape(f"{usage['month']}-{day:02d} {source}: {value:,} operations")
            parts.append(
                f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{max(bar_w - 2, 1):.1f}" '
                f'height="{h:.1f}" fill="{colors.get(source, PALETTE[-1])}"><title>{label}</title></rect>'
            )
        if day == 1 or day % 5 == 0:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{height - 6}" class="axis" text-anchor="middle">{day}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))
