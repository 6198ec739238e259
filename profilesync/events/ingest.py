"""Events in: HTTP V2 batches parsed, checked and stored in DuckDB, vectorised.

A request body is parsed and validated by one DuckDB statement (see
:mod:`profilesync.events.validate`) on a per-thread in-memory database, outside the
store's lock; nothing loops over events in Python. Valid events are appended through
:class:`Writer` to the store's events part, ignoring events whose ``device_id`` and
``insert_id`` arrived within the last 7 days (see :mod:`profilesync.events.dedup`); it
commits before anyone is told they are stored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from profilesync.errors import ConfigurationError
from profilesync.events import validate
from profilesync.events.projects import project_for_key
from profilesync.events.validate import MIN_ID_LENGTH, complete, present_fields, scratch, split
from profilesync.events.writer import KEY_COLUMNS, Appended, Prepared, Writer, prepare
from profilesync.store.protocol import Store

__all__ = [
    "Appended",
    "Batch",
    "InvalidApiKeyError",
    "InvalidBatchError",
    "PayloadTooLargeError",
    "Prepared",
    "Writer",
    "answer",
    "check_size",
    "ingest",
    "parse_batch",
    "prepare",
    "store_batch",
]

MAX_EVENTS = 2_000
MAX_BYTES = 1_048_576  # 1 MB
#: the event type of an identify call: user property operations, applied to the user
IDENTIFY = "$identify"
#: an event's ``ip`` meaning "the address this request came from"
REMOTE = "$remote"


class InvalidBatchError(ConfigurationError):
    """A batch (or its events) is not in the HTTP V2 format; nothing of it was stored."""

    code = "invalid_batch"

    def __init__(self, message: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.body: dict[str, Any] = {"code": 400, "error": message, **(body or {})}


class PayloadTooLargeError(ConfigurationError):
    code = "payload_too_large"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.body: dict[str, Any] = {"code": 413, "error": message}


class InvalidApiKeyError(ConfigurationError):
    """No project has this API key: a 400 whose ``error`` starts with ``Invalid API key:``,
    as Amplitude answers it (the SDKs recognise a bad key by that text and stop retrying)."""

    code = "invalid_api_key"

    def __init__(self, api_key: str = "") -> None:
        super().__init__(f"{INVALID_KEY_HINT} (Invalid API key: {api_key[:100]})")
        self.body: dict[str, Any] = {
            "code": 400,
            "error": f"Invalid API key: {api_key[:100]}",
            "hint": INVALID_KEY_HINT,
        }


INVALID_KEY_HINT = (
    "no project has this api_key: use the key shown when the project was created "
    "(`profilesync events projects rotate-key NAME` makes a new one)"
)


# -- HTTP V2 batches --------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """What one request to an ingestion endpoint may hold."""

    path: str
    max_bytes: int
    max_events: int | None  # None: only the size limits it
    advice: str  # what to do about a request over the limit


#: the ingestion APIs by name, as Amplitude limits them (``identify``: ours, see the README)
LIMITS = {
    "httpapi": Limits(
        "/2/httpapi", MAX_BYTES, MAX_EVENTS, "send smaller batches (or bulk loads to /batch)"
    ),
    "batch": Limits("/batch", 20 * MAX_BYTES, None, "split the events array in half"),
    "identify": Limits("/identify", MAX_BYTES, MAX_EVENTS, "send fewer identifications"),
}


@dataclass
class Batch:
    """A parsed ingestion request: its API key, its typed valid events, and the API it
    came through (a key of :data:`LIMITS`).

    A batch made by :meth:`group` stands for several requests stored by one transaction
    (group commit): each of its ``parts`` has its project (``project_id``) and, once
    stored, what became of its events (``done``).
    """

    api_key: str
    prepared: Prepared
    size_bytes: int
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    api: str = "httpapi"
    project_id: int | None = None
    parts: list[Batch] = field(default_factory=list)
    done: Appended | None = None

    @classmethod
    def group(cls, parts: list[Batch]) -> Batch:
        """Requests (each with its ``project_id`` set) to store in one transaction."""
        first = parts[0]
        return cls(first.api_key, first.prepared, 0, first.received_at, first.api, parts=parts)


def _limits(api: str) -> Limits:
    if api not in LIMITS:
        raise ValueError(f"no ingestion API named {api!r}")
    return LIMITS[api]


def check_size(size: int, api: str = "httpapi") -> None:
    """Raise the 413 of ``api`` for a request of ``size`` bytes over its limit."""
    limits = _limits(api)
    if size > limits.max_bytes:
        raise PayloadTooLargeError(
            f"the request is {size:,} bytes, over the limit of {limits.max_bytes:,} bytes "
            f"({limits.max_bytes // MAX_BYTES} MB) per request to {limits.path}: {limits.advice}"
        )


def parse_batch(
    body: bytes, api: str = "httpapi", api_key: str | None = None, remote: str | None = None
) -> Batch:
    """Check and type a request body; raise the error a client must see (400 or 413).

    ``body`` is the JSON of an HTTP V2 request (``api`` ``httpapi`` or ``batch``), or for
    ``identify`` the ``identification`` form field (one object or a list), sent with
    ``api_key``: each identification becomes an ``$identify`` event. ``remote`` is the
    sender's address: an event's ``ip`` of ``$remote`` means it, as in Amplitude.
    """
    limits = _limits(api)
    check_size(len(body), api)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidBatchError("the request body is not UTF-8 encoded JSON") from exc
    if api == "identify":
        text = _identify_request(text, api_key)
    with validate.body(text) as loaded:
        key, typed = _checked(loaded, limits, body if api != "identify" else text.encode())
    events, rejected = split(typed)
    if rejected.num_rows:
        raise InvalidBatchError("some events are invalid; nothing was stored", _report(rejected))
    events = _remote_ip(complete(events.drop_columns(["idx"])), remote)
    return Batch(key, prepare(scratch(), events), size_bytes=len(body), api=api)


def _remote_ip(events: pa.Table, remote: str | None) -> pa.Table:
    """``ip: "$remote"`` replaced by the sender's address (kept as sent without one)."""
    ip = events.column("ip")
    if remote is None or not pc.any(pc.equal(ip, REMOTE)).as_py():
        return events
    index = events.schema.get_field_index("ip")
    return events.set_column(index, "ip", pc.if_else(pc.equal(ip, REMOTE), remote, ip))


def _checked(loaded: validate.Body, limits: Limits, raw: bytes) -> tuple[str, pa.Table]:
    """The API key and typed events of a loaded body, after checking its envelope."""
    kind, key, events_kind, count, min_len = loaded.head()
    if kind != "OBJECT":
        raise InvalidBatchError(
            'the request body must be a JSON object {"api_key": ..., "events": [...]}'
        )
    if not key:
        raise InvalidBatchError(
            "the request has no api_key: add the project's API key", {"missing_field": "api_key"}
        )
    if events_kind != "ARRAY":
        raise InvalidBatchError(
            "the request has no events array: send events as a JSON array",
            {"missing_field": "events"},
        )
    if limits.max_events is not None and count > limits.max_events:
        raise PayloadTooLargeError(
            f"the request has {count:,} events, over the limit of {limits.max_events:,} "
            f"events per request to {limits.path}: {limits.advice}"
        )
    return str(key), loaded.check(present_fields(raw), _min_id_length(min_len), KEY_COLUMNS)


def _identify_request(identification: str, api_key: str | None) -> str:
    """An Identify API request as an HTTP V2 body of ``$identify`` events."""
    if not api_key:
        raise InvalidBatchError(
            "the request has no api_key: add the project's API key", {"missing_field": "api_key"}
        )
    if not identification.strip():
        raise InvalidBatchError(
            "the request has no identification: send a JSON object or a list of them",
            {"missing_field": "identification"},
        )
    try:
        found = json.loads(identification)
    except (ValueError, RecursionError) as exc:
        raise InvalidBatchError("identification is not valid JSON") from exc
    docs = found if isinstance(found, list) else [found]
    # one object per identify call: a short list, so plain Python
    events = [{**d, "event_type": IDENTIFY} if isinstance(d, dict) else d for d in docs]
    return json.dumps({"api_key": api_key, "events": events}, ensure_ascii=False)


def _min_id_length(value: Any) -> int:
    if value is None:
        return MIN_ID_LENGTH
    try:
        return max(1, int(str(value)))
    except ValueError as exc:
        raise InvalidBatchError(
            "options.min_id_length must be a whole number",
            {"events_with_invalid_fields": {"options.min_id_length": []}},
        ) from exc


_GROUPS = {
    "missing": "events_with_missing_fields",
    "invalid": "events_with_invalid_fields",
    "id_length": "events_with_invalid_id_lengths",
}


def _report(rejected: pa.Table) -> dict[str, Any]:
    """The 400 body: event indexes by field and kind, and one line per problem."""
    body: dict[str, Any] = {}
    problems = []
    for row in rejected.to_pylist():  # only the rejected events of one request
        for reason in row["reasons"]:
            group = body.setdefault(_GROUPS[reason["kind"]], {})
            group.setdefault(reason["field"], []).append(row["idx"])
            problems.append({"index": row["idx"], **reason})
    body["invalid_events"] = problems
    return body


def ingest(store: Store, body: bytes) -> dict[str, Any]:
    """Parse, authenticate and store one HTTP V2 request body; the 200 answer's body.

    Raises :class:`InvalidBatchError` (400), :class:`PayloadTooLargeError` (413) or
    :class:`InvalidApiKeyError` (400); nothing is stored then.
    """
    batch = parse_batch(body)
    project = project_for_key(store, batch.api_key)
    if project is None:
        raise InvalidApiKeyError(batch.api_key)
    done = store_batch(store, project.id, batch)
    return answer(batch, done)


def store_batch(store: Store, project_id: int, batch: Batch) -> Appended:
    """Store one parsed request in ``project_id`` and commit; a :meth:`Batch.group`
    stores each part in its own project, in arrival order, with one commit."""
    parts = batch.parts or [batch]
    with Writer(store, project_id, batch.received_at) as writer:
        for part in parts:
            part.done = writer.append(part.prepared, part.project_id)
    return writer.total


def answer(batch: Batch, done: Appended) -> dict[str, Any]:
    """The 200 answer; for a group, ``parts`` holds each request's own answer."""
    if batch.parts:
        return {"code": 200, "parts": [answer(p, p.done or Appended()) for p in batch.parts]}
    return {
        "code": 200,
        "events_ingested": batch.prepared.events.num_rows,
        "payload_size_bytes": batch.size_bytes,
        "server_upload_time": int(batch.received_at.timestamp() * 1000),
        "events_deduplicated": done.duplicates,
    }
