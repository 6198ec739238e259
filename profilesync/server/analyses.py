"""HTTP for funnels, retention and saved cohorts: the JSON API, and the pages of
:mod:`~profilesync.server.analysis_pages` (``router`` includes both).

- ``POST /api/query/funnel`` (a :class:`~profilesync.app.analyses.FunnelQuery`) and
  ``POST /api/query/retention`` (a :class:`~profilesync.app.analyses.RetentionQuery`)
  answer as :func:`profilesync.app.analyses.funnel` and ``retention`` do;
- ``/api/cohorts``: list, add, show (size and a sample now), replace, delete, and
  ``/api/cohorts/{name}/export?format=csv|jsonl``, every member's user id, streamed.

Reads run on the store's reader outside the store lock (:mod:`~profilesync.server.snapshot`).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from contextlib import ExitStack
from itertools import islice
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import Field

from profilesync.app import analyses
from profilesync.server.analysis_pages import pages
from profilesync.server.deps import require_token, store_session
from profilesync.server.snapshot import analysing

router = APIRouter()
router.include_router(pages)

EXPORT_BATCH = 1000
MEDIA = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}


@router.post(
    "/api/query/funnel",
    tags=["analyses"],
    summary="Funnel: users reaching each step in order, within a window of the first",
    description=(
        "Steps are event types (with optional event filters); `order` is `this` (other "
        "events in between allowed), `strict` or `any`. Each step answers `users`, "
        "`conversion` (from step 1), `step_conversion` (from the previous step), `drop_off` "
        "and `median_seconds_to_convert`; with `group_by` (`profile:` current value, `user:` "
        "value at step 1) the same per group under `groups`. `where` takes `cohort:NAME`."
    ),
)
def funnel(
    request: Request, query: analyses.FunnelQuery, _: str = Depends(require_token)
) -> dict[str, Any]:
    with analysing(request) as store:
        return analyses.funnel(store, query)


@router.post(
    "/api/query/retention",
    tags=["analyses"],
    summary="Retention: users by the day or week of their start, and when they came back",
    description=(
        "A cohort per interval of the users' first `start_event`; `returned[k]` counts those "
        "with a `return_event` k intervals later (`mode: on`) or k or more (`on_or_after`)."
    ),
)
def retention(
    request: Request, query: analyses.RetentionQuery, _: str = Depends(require_token)
) -> dict[str, Any]:
    with analysing(request) as store:
        return analyses.retention(store, query)


# -- cohorts ----------------------------------------------------------------------------


class NewCohort(analyses.CohortDefinition):
    """A cohort to save: its name and its conditions."""

    name: str = Field(min_length=1, max_length=100, description="e.g. Whales")


def _definition(body: analyses.CohortDefinition) -> analyses.CohortDefinition:
    return analyses.CohortDefinition(where=body.where, behaviour=body.behaviour)


def _shown(request: Request, name: str, sample: int) -> dict[str, Any]:
    with analysing(request) as store:
        return analyses.cohort_show(store, name, sample)


@router.get("/api/cohorts", tags=["cohorts"], summary="Saved cohorts (definitions, no sizes)")
def cohorts(request: Request, _: str = Depends(require_token)) -> list[dict[str, Any]]:
    with store_session(request) as store:
        return analyses.cohort_list(store)


@router.post(
    "/api/cohorts",
    tags=["cohorts"],
    status_code=201,
    summary="Save a cohort: profile conditions and behaviour, all of which must hold",
)
def add_cohort(
    request: Request, body: NewCohort, _: str = Depends(require_token)
) -> dict[str, Any]:
    with store_session(request) as store:
        saved = analyses.cohort_add(store, body.name, _definition(body))
    return _shown(request, saved["name"], 0)


@router.get(
    "/api/cohorts/{name}",
    tags=["cohorts"],
    summary="A cohort's definition, its size now and the first member ids",
)
def cohort(
    request: Request,
    name: str,
    sample: int = Query(20, ge=0, le=1000),
    _: str = Depends(require_token),
) -> dict[str, Any]:
    return _shown(request, name, sample)


@router.put("/api/cohorts/{name}", tags=["cohorts"], summary="Replace a cohort's definition")
def replace_cohort(
    request: Request, name: str, body: analyses.CohortDefinition, _: str = Depends(require_token)
) -> dict[str, Any]:
    with store_session(request) as store:
        analyses.cohort_update(store, name, body)
    return _shown(request, name, 0)


@router.delete("/api/cohorts/{name}", tags=["cohorts"], summary="Delete a saved cohort")
def delete_cohort(request: Request, name: str, _: str = Depends(require_token)) -> dict[str, Any]:
    with store_session(request) as store:
        analyses.cohort_delete(store, name)
    return {"deleted": name}


@router.get(
    "/api/cohorts/{name}/export",
    tags=["cohorts"],
    summary="Every member's user id now: CSV (a user_id column) or JSON Lines",
)
def export_cohort(
    request: Request,
    name: str,
    format: Literal["csv", "jsonl"] = Query("csv", description="csv or jsonl"),
    _: str = Depends(require_token),
) -> StreamingResponse:
    stack = ExitStack()
    try:
        store = stack.enter_context(analysing(request))
        ids = analyses.cohort_export(store, name)  # an unknown name fails here, before streaming
    except BaseException:
        stack.close()
        raise
    filename = f"cohort-{_safe(name)}.{format}"
    return StreamingResponse(
        _streamed(ids, format, stack),
        media_type=MEDIA[format],
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _streamed(ids: Iterator[str], fmt: str, stack: ExitStack) -> Iterator[str]:
    """The ids as text, a thousand at a time; the reader closes when the stream ends."""
    with stack:
        if fmt == "csv":
            yield "user_id\n"
        while batch := list(islice(ids, EXPORT_BATCH)):
            if fmt == "csv":
                buffer = io.StringIO()
                csv.writer(buffer, lineterminator="\n").writerows([i] for i in batch)
                yield buffer.getvalue()
            else:
                yield "".join(json.dumps({"user_id": i}) + "\n" for i in batch)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
