"""What the query pages (segmentation, funnels, retention, cohorts) share in reading a form."""

from __future__ import annotations

from datetime import date

from pydantic import ValidationError

from profilesync.errors import ConfigurationError


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
