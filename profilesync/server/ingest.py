"""HTTP for event ingestion, in Amplitude's shapes: ``POST /2/httpapi`` (HTTP V2),
``POST /batch`` (Batch Event Upload) and ``POST /identify`` (Identify API).

Each request is authenticated by the project's ``api_key`` in its body, read whole (a body
over the endpoint's limit is read to its end and dropped, up to a cap, so the client reads
the 413), parsed and checked outside the store lock, then stored. Included in
:data:`profilesync.server.events.router`.
"""

from __future__ import annotations

import threading
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from profilesync.app import events as app_events
from profilesync.app import projects as app_projects
from profilesync.errors import ProfilesyncError
from profilesync.server.deps import store_session
from profilesync.server.metrics import count_deduplicated

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
    "An event whose device_id and insert_id arrived in the last 7 days is ignored. 429 when "
    "a device or user sends too fast (throttled_devices, throttled_users, throttled_events; "
    "nothing stored; retry after the Retry-After seconds)."
)


@router.post(
    "/2/httpapi",
    tags=["events"],
    summary="Send events (HTTP V2 format)",
    description=(
        'Body: `{"api_key": "<project key>", "events": [{"event_type", "user_id" or "device_id", '
        '"time" (ms since epoch), "event_properties", "user_properties", "insert_id", ...}]}`. '
        f"At most 2,000 events and 1 MB; 30 events/s per device or user over 30 s. {_ANSWERS}"
    ),
    responses={400: {}, 413: {}, 429: {}},
)
async def http_api(request: Request) -> Response:
    return await _ingest(request, "httpapi")


@router.post(
    "/batch",
    tags=["events"],
    summary="Send events in bulk (Batch Event Upload format)",
    description=(
        "The body of /2/httpapi, up to 20 MB (no event count limit); 1,000 events/s per "
        f"device or user over 30 s and 500,000 a day. {_ANSWERS}"
    ),
    responses={400: {}, 413: {}, 429: {}},
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
        throttle = _throttle_of(request)
        admitted = await run_in_threadpool(
            throttle.admit, api, batch.api_key, batch.prepared.events
        )
        try:
            answer = await run_in_threadpool(_store_batch, request, batch)
        except BaseException:  # not stored: its events do not count
            throttle.release(admitted)
            raise
    except app_events.ThrottledError as exc:
        headers = {"Retry-After": str(exc.retry_after)}
        return JSONResponse(exc.body, status_code=429, headers=headers)
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
    """Store ``batch`` and answer once it is committed, with any requests that arrive
    meanwhile: the first to find no commit running stores every waiting one in one
    transaction (group commit: one durable commit acknowledges them all); the others
    wait for it, and the next of them leads the following group."""
    group = _group_of(request)
    mine = _Waiting(batch)
    with group.ready:
        group.waiting.append(mine)
    while True:
        with group.ready:
            while mine.outcome is None and group.busy:
                group.ready.wait()
            if mine.outcome is not None:
                break
            group.busy = True  # lead: take the oldest waiting requests (this one among them)
            taken, group.waiting = group.waiting[:GROUP_MAX], group.waiting[GROUP_MAX:]
        try:
            _commit(request, taken)
        finally:
            with group.ready:
                group.busy = False
                group.ready.notify_all()
    if isinstance(mine.outcome, BaseException):
        raise mine.outcome
    return mine.outcome


#: requests stored by one transaction at most
GROUP_MAX = 64


class _Waiting:
    def __init__(self, batch: app_events.Batch) -> None:
        self.batch = batch
        self.outcome: dict[str, Any] | BaseException | None = None


class _Group:
    def __init__(self) -> None:
        self.ready = threading.Condition()
        self.waiting: list[_Waiting] = []
        self.busy = False


_groups_lock = threading.Lock()


def _throttle_of(request: Request) -> app_events.Throttle:
    """The app's rate limits (:data:`profilesync.events.throttle.RULES` unless a
    ``Throttle`` was put in ``app.state.throttle``), counted in this process only."""
    with _groups_lock:
        throttle: app_events.Throttle | None = getattr(request.app.state, "throttle", None)
        if throttle is None:
            throttle = request.app.state.throttle = app_events.Throttle()
        return throttle


def _group_of(request: Request) -> _Group:
    with _groups_lock:
        group: _Group | None = getattr(request.app.state, "ingest_group", None)
        if group is None:
            group = request.app.state.ingest_group = _Group()
        return group


def _commit(request: Request, taken: list[_Waiting]) -> None:
    """Store the taken requests in one transaction; give each its answer or its error."""
    try:
        with store_session(request) as store:
            valid, projects = [], {}  # one lookup per key of the group
            for item in taken:
                key = item.batch.api_key
                if key not in projects:
                    projects[key] = app_projects.project_for_key(store, key)
                project = projects[key]
                if project is None:
                    item.outcome = app_events.InvalidApiKeyError(item.batch.api_key)
                    continue
                item.batch.project_id = project.id
                valid.append(item)
            if valid:
                group = app_events.Batch.group([item.batch for item in valid])
                answers = app_events.ingest_batch(store, group)["parts"]
                for item, answer in zip(valid, answers, strict=True):
                    item.outcome = answer
                    count_deduplicated(request, item.batch.project_id, answer)
    except BaseException as exc:  # the transaction failed: every request it held did
        for item in taken:
            if item.outcome is None:
                item.outcome = exc
        if not isinstance(exc, Exception):
            raise
