"""What the query pages (segmentation, funnels, retention, cohorts) share in reading a form."""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import ValidationError

from profilesync.app import events as app_events
from profilesync.errors import ConfigurationError

#: filter rows a query form shows (filled ones first, then empty ones)
FILTER_ROWS = 3


def day(text: str) -> date | None:
    """A form's ``YYYY-MM-DD`` field as a date; None when left empty."""
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise ConfigurationError(f"{text!r} is not a date: write it as YYYY-MM-DD") from exc


def message(exc: Exception) -> str:
    """An error as one line for the page (pydantic's list of errors joined)."""
    if isinstance(exc, ValidationError):
        return "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
    return str(exc)


def filter_rows(params: Any) -> list[tuple[str, str, str]]:
    """The form's filter rows as (``kind:name``, op, values), padded to :data:`FILTER_ROWS`."""
    rows = list(
        zip(
            params.getlist("filter_prop"),
            params.getlist("filter_op"),
            params.getlist("filter_value"),
            strict=False,
        )
    )
    return rows + [("", "is", "")] * (FILTER_ROWS - len(rows))


def filters(rows: list[tuple[str, str, str]]) -> list[app_events.Filter]:
    """The filled filter rows (``kind:name`` pickers, comma-separated values)."""
    found = []
    for prop, op, value in rows:
        if not prop:
            continue
        ref = app_events.PropertyRef.parse(prop)
        values = [v.strip() for v in value.split(",") if v.strip()]
        found.append(
            app_events.Filter.model_validate(
                {"kind": ref.kind, "name": ref.name, "op": op, "values": values}
            )
        )
    return found
