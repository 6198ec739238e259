"""HTTP for event ingestion, in Amplitude's shapes: ``POST /2/httpapi`` (HTTP V2),
``POST /batch`` (Batch Event Upload) and ``POST /identify`` (Identify API).

Each request is authenticated by the project's ``api_key`` in its body, read whole (a body
over the endpoint's limit is read to its end and dropped, up to a cap, so the client reads
the 413), parsed and checked outside the store lock, then stored. Included in
:data:`profilesync.server.events.router`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from profilesync.app import events as app_events
from profilesync.app import projects as app_projects
from profilesync.errors import ProfilesyncError
from profilesync.server.deps import store_session

router = APIRouter()

#: browsers may send events from any site: the api_key in the body is the credential, no cookie
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type",
    "Access-Control-Max-Age": "86400",
}
#: how much of a body over the limit is read (and dropped) before answering 413, by API
DRAIN_BYTES = {"httpapi": 20 << 20, "batch": 40 << 20, "identify": 20 << 20}

_ANSWERS = (
    "200 once the events are committed; 400 names each invalid event index and field "
    '(nothing is stored), and a wrong api_key is a 400 `{"code": 400, "error": "Invalid API '
    'key: ..."}`; 413 over a limit (the body is read first, so the client sees the answer). '
    "An event whose device_id and insert_id arrived in the last 7 days is ignored."
)


@router.post(
    "/2/httpapi",
    tags=["events"],
    summary="Send events (HTTP V2 format)",
    description=(
        'Body: `{"api_key": "<project key>", "events": [{"event_type", "user_id" or "device_id", '
        '"time" (ms since epoch), "event_properties", "user_properties", "insert_id", ...}]}`. '
        f"At most 2,000 events and 1 MB. {_ANSWERS}"
    ),
    responses={400: {}, 413: {}},
)
async def http_api(request: Request) -> Response:
    return await _ingest(request, "httpapi")


@router.post(
    "/batch",
    tags=["events"],
    summary="Send events in bulk (Batch Event Upload format)",
    description=f"The body of /2/httpapi, up to 20 MB (no event count limit). {_ANSWERS}",
    responses={400: {}, 413: {}},
)
async def batch_api(request: Request) -> Response:
    return await _ingest(request, "batch")


@router.post(
    "/identify",
    tags=["events"],
    summary="Update user properties (Identify API)",
    description=(
        "Form fields (`application/x-www-form-urlencoded` or `multipart/form-data`): `api_key` "
        "and `identification`, one JSON object or a list (`user_id` or `device_id`, "
        "`user_properties` with `$set`, `$setOnce`, `$add`, ... or plain values, which are "
        "set). Answers `success`; errors as /2/httpapi."
    ),
    responses={400: {}, 413: {}},
)
async def identify_api(request: Request) -> Response:
    return await _ingest(request, "identify")


@router.options("/2/httpapi", include_in_schema=False)
@router.options("/batch", include_in_schema=False)
@router.options("/identify", include_in_schema=False)
def preflight() -> Response:
    return Response(status_code=204, headers=CORS)


async def _ingest(request: Request, api: str) -> Response:
    response = await _answer(request, api)
    response.headers.update(CORS)
    return response


async def _answer(request: Request, api: str) -> Response:
    try:
        body = await _read_body(request, api)
        key = None
        if api == "identify":
            body, key = await _identification(request, body)
        remote = request.client.host if request.client else None
        batch = await run_in_threadpool(app_events.parse_batch, body, api, key, remote)
        answer = await run_in_threadpool(_store_batch, request, batch)
    except app_events.INGEST_ERRORS as exc:
        return JSONResponse(exc.body, status_code=exc.body["code"])
    except ProfilesyncError as exc:  # e.g. the store is busy: the client should retry
        status = 503 if exc.retriable else 500
        return JSONResponse({"code": status, "error": str(exc)}, status_code=status)
    if api == "identify":
        return PlainTextResponse("success")
    return JSONResponse(answer)


async def _read_body(request: Request, api: str) -> bytes:
    """The body; past the size limit the rest is read and thrown away (up to
    :data:`DRAIN_BYTES`) before the 413 is raised, so the client, still sending, reads the
    answer instead of a reset connection."""
    declared = request.headers.get("content-length", "")
    refused: app_events.PayloadTooLargeError | None = None
    try:
        app_events.check_size(int(declared) if declared.isdigit() else 0, api)
    except app_events.PayloadTooLargeError as exc:
        refused = exc
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if refused is None:
            try:
                app_events.check_size(size, api)
                chunks.append(chunk)
            except app_events.PayloadTooLargeError as exc:
                refused, chunks = exc, []
        elif size > DRAIN_BYTES[api]:
            break  # the answer closes the connection: the rest is never read
    if refused is not None:
        raise refused
    return b"".join(chunks)


async def _identification(request: Request, body: bytes) -> tuple[bytes, str | None]:
    """The ``identification`` and ``api_key`` fields of an Identify API form (or query)."""

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    form: Any = {}
    if body:
        try:
            form = await Request(request.scope, replay).form()
        except Exception as exc:  # a malformed multipart body
            raise app_events.InvalidBatchError(
                "the body is not a form: send api_key and identification as "
                "application/x-www-form-urlencoded or multipart/form-data fields"
            ) from exc

    def field(name: str) -> str | None:
        value = form.get(name) if name in form else request.query_params.get(name)
        return value if isinstance(value, str) else None

    return (field("identification") or "").encode(), field("api_key")


def _store_batch(request: Request, batch: app_events.Batch) -> dict[str, Any]:
    with store_session(request) as store:
        if app_projects.project_for_key(store, batch.api_key) is None:
            raise app_events.InvalidApiKeyError(batch.api_key)
        return app_events.ingest_batch(store, batch)
