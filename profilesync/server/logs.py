"""The logs of ``profilesync serve``: one format for uvicorn's loggers and profilesync's own.

``--log-format text`` (the default) writes lines as uvicorn does (``INFO:     ...``);
``--log-format json`` writes one JSON object per line: ``ts`` (ISO 8601 UTC), ``level``,
``logger``, ``message`` and the record's fields. Both go to stderr.

Two kinds of records carry fields:

- ``profilesync.access``, one per HTTP request (:class:`AccessLog`): ``method``, ``path``
  (the route's template when it has parameters, such as ``/login/invite/{code}``; never
  the query string: an Identify call may carry an ``api_key`` there), ``status``,
  ``duration_ms``, ``client`` and ``user`` when the request was authenticated;
- ``profilesync.sync``, one per sync run (:func:`logging_syncs`): ``source``, ``run_id``,
  ``status``, ``rows`` (read, inserted, updated, deleted, unchanged, rejected),
  ``operations``, ``duration_ms`` and, for a failure, ``error_code``.

Secrets never reach a line: no request header, body or query string is logged, and
whatever text a record carries passes :func:`redact` (API tokens, bearer credentials,
``api_key`` and ``password`` values, invitation codes) as a last guard.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from profilesync.errors import (
    ConcurrentSyncError,
    ConfigurationError,
    ProfilesyncError,
)
from profilesync.model import SyncResult

FORMATS = ("text", "json")
#: the loggers that get the handler: uvicorn's (server, errors) and profilesync's own
LOGGERS = ("uvicorn", "profilesync")

access_log = logging.getLogger("profilesync.access")
sync_log = logging.getLogger("profilesync.sync")

_SECRETS = re.compile(
    r"(?P<token>\bps_[A-Za-z0-9_-]{20,})"
    r"|(?P<bearer>\b[Bb]earer\s+)\S+"
    r"|(?P<field>\b(?:api_key|password|token|secret)[\"']?\s*[=:]\s*[\"']?)[^\s&\"',}]+"
    r"|(?P<invite>/login/invite/)[^\s/?#\"'{]+"
)


def redact(text: str) -> str:
    """``text`` with API tokens, bearer credentials, ``api_key=``/``password=`` values and
    invitation codes (``/login/invite/<code>``) replaced by ``[redacted]``."""

    def hide(match: re.Match[str]) -> str:
        keep = match.group("bearer") or match.group("field") or match.group("invite") or ""
        return f"{keep}[redacted]"

    return _SECRETS.sub(hide, text)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, message, then the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key, value in getattr(record, "fields", {}).items():
            line.setdefault(key, value)
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``INFO:     message``, as uvicorn prints its own lines."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"{record.levelname + ':':<9} {redact(record.getMessage())}"
        if record.exc_info:
            text += "\n" + redact(self.formatException(record.exc_info))
        return text


def _timestamp(created: float) -> str:
    moment = datetime.fromtimestamp(created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def check_format(name: str) -> str:
    if name not in FORMATS:
        raise ConfigurationError(f"--log-format {name!r}: choose text or json")
    return name


def configure(name: str, level: int = logging.INFO) -> None:
    """Send uvicorn's and profilesync's records to stderr in format ``name``; uvicorn's
    own access log is replaced by :class:`AccessLog` (run uvicorn with ``log_config=None,
    access_log=False``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if check_format(name) == "json" else TextFormatter())
    for logger_name in LOGGERS:
        logger = logging.getLogger(logger_name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False


class AccessLog:
    """ASGI middleware: one ``profilesync.access`` record per HTTP request, when it ends."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless the app starts a response

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            _log_request(scope, status, (time.perf_counter() - started) * 1000)


def _log_request(scope: Scope, status: int, duration_ms: float) -> None:
    client = scope.get("client")
    fields: dict[str, Any] = {
        "method": scope["method"],
        "path": _path(scope),
        "status": status,
        "duration_ms": round(duration_ms, 1),
        "client": f"{client[0]}:{client[1]}" if client else None,
    }
    user = _user(scope)
    if user:
        fields["user"] = user
    message = (
        f'{fields["client"] or "-"} - "{fields["method"]} {fields["path"]} '
        f'HTTP/{scope.get("http_version", "1.1")}" {status} ({fields["duration_ms"]} ms)'
    )
    access_log.info(message, extra={"fields": fields})


def _path(scope: Scope) -> str:
    """The route's template when it has path parameters (``/login/invite/{code}``: an
    invitation code opens an account and is never written), else the path itself (which a
    route without parameters equals, and which names the file under a mount); a path no
    route matched passes :func:`redact`."""
    template = getattr(scope.get("route"), "path", None)
    if isinstance(template, str) and "{" in template:
        return template
    return redact(str(scope["path"]))


def _user(scope: Scope) -> str | None:
    """Who made the request: the user authentication found (``request.state.user``), else
    nobody. Never looked up here: this runs on the event loop, where waiting for the store
    would stall every request."""
    state = scope.get("state") or {}
    user = state.get("user") if isinstance(state, dict) else None
    name = getattr(user, "name", None)
    return name if isinstance(name, str) else None


SyncFn = Callable[..., SyncResult]


def logging_syncs(sync: SyncFn) -> SyncFn:
    """``sync`` that logs a ``profilesync.sync`` record for every run it makes."""

    def logged(store: Any, name: str, *args: Any, **kwargs: Any) -> SyncResult:
        started, since = time.perf_counter(), datetime.now(UTC)
        try:
            result = sync(store, name, *args, **kwargs)
        except ConcurrentSyncError:
            raise  # another process syncs it: no run was made
        except ProfilesyncError as exc:
            run = _run_since(store, name, since)
            _log_failure(name, run, exc, (time.perf_counter() - started) * 1000)
            raise
        _log_success(result, (time.perf_counter() - started) * 1000)
        return result

    return logged


_ROWS = ("read", "inserted", "updated", "deleted", "unchanged", "rejected")


def _log_success(result: SyncResult, duration_ms: float) -> None:
    fields = {
        "source": result.source,
        "run_id": result.run_id,
        "status": result.status,
        "mode": result.mode,
        "rows": {kind: getattr(result, kind) for kind in _ROWS},
        "operations": result.operations,
        "duration_ms": round(duration_ms, 1),
    }
    sync_log.info(
        "sync of %s: %s, %d inserted, %d updated, %d deleted, %d rejected, %d operations "
        "in %.2f s (run %s)",
        result.source,
        result.status,
        result.inserted,
        result.updated,
        result.deleted,
        result.rejected,
        result.operations,
        duration_ms / 1000,
        result.run_id,
        extra={"fields": fields},
    )


def _log_failure(name: str, run: dict[str, Any], exc: ProfilesyncError, duration_ms: float) -> None:
    fields = {
        "source": name,
        "run_id": run.get("id"),
        "status": "failed",
        "rows": {kind: run.get(kind) or 0 for kind in _ROWS},
        "operations": 0,
        "duration_ms": round(duration_ms, 1),
        "error_code": exc.code,
    }
    sync_log.warning(
        "sync of %s: failed in %.2f s (run %s): %s",
        name,
        duration_ms / 1000,
        fields["run_id"],
        exc,
        extra={"fields": fields},
    )


def _run_since(store: Any, name: str, since: datetime) -> dict[str, Any]:
    """The failed run the engine recorded for this sync; nothing when it recorded none
    (an unknown source, or a store that could not write it)."""
    try:
        runs = store.runs(name, limit=1)
    except Exception:  # the store is what failed: the line goes out without the run
        return {}
    if not runs or runs[0].get("status") != "failed" or not runs[0].get("finished_at"):
        return {}
    finished = datetime.fromisoformat(runs[0]["finished_at"])
    return runs[0] if finished >= since else {}
