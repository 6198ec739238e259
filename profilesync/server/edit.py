"""The "Edit" page of a source: its mapping as a form, a review of what the change does to
the profiles with Test mapping's results, then Save (or Save and resync now).

Plain forms, no script: the values being edited travel in the form itself (an
:class:`EditForm`) from the form to the review and back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData

from profilesync.app import Store
from profilesync.app.edit import SourceChanges, apply_edit, plan_edit, user_id_column
from profilesync.app.sources import STRATEGIES, ChecksFailedError
from profilesync.errors import ConcurrentSyncError, ProfilesyncError
from profilesync.mapping import QUERY_TABLE
from profilesync.model import Source, format_frequency, parse_frequency
from profilesync.server import views
from profilesync.server.deps import (
    get_scheduler,
    render,
    require_user,
    store_session,
    write_session,
)
from profilesync.server.forms import form_data

router = APIRouter(dependencies=[Depends(require_user)], include_in_schema=False)

#: empty "add a property" rows the form offers (no script adds more)
ADD_ROWS = 3


@dataclass
class EditForm:
    """The edit as the form holds it: every property's original and new display name,
    the ones to remove, the columns to add, the user id column, query, frequency, strategy."""

    orig: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    add_column: list[str] = field(default_factory=list)
    add_name: list[str] = field(default_factory=list)
    user_id: str = ""
    query: str = ""
    frequency: str = ""
    strategy: str = ""

    @classmethod
    def of(cls, source: Source) -> EditForm:
        names = source.mapping.property_names
        return cls(
            orig=list(names),
            names=list(names),
            user_id=user_id_column(source) or "",
            query=source.mapping.query or "",
            frequency=format_frequency(source.frequency_seconds),
            strategy=source.strategy,
        )

    @classmethod
    def read(cls, form: FormData) -> EditForm:
        def texts(key: str) -> list[str]:
            return [str(v) for v in form.getlist(key)]

        return cls(
            orig=texts("orig"),
            names=texts("name"),
            remove=texts("remove"),
            add_column=texts("add_column"),
            add_name=texts("add_name"),
            user_id=str(form.get("user_id") or ""),
            query=str(form.get("query") or ""),
            frequency=str(form.get("frequency") or ""),
            strategy=str(form.get("strategy") or ""),
        )

    def rows(self) -> list[tuple[str, str, bool]]:
        """(original name, display name, removed) of each property."""
        return [(o, n, o in self.remove) for o, n in zip(self.orig, self.names, strict=False)]

    def adds(self) -> list[tuple[str, str]]:
        """The add rows as shown: the filled ones, then empty ones to fill."""
        filled = [(c, n) for c, n in zip(self.add_column, self.add_name, strict=False) if c.strip()]
        return filled + [("", "")] * ADD_ROWS

    def hidden(self) -> list[tuple[str, str]]:
        """The form as hidden fields, for the review step."""
        pairs = [("orig", o) for o in self.orig] + [("name", n) for n in self.names]
        pairs += [("remove", r) for r in self.remove]
        for column, name in self.adds():
            if column:
                pairs += [("add_column", column), ("add_name", name)]
        pairs += [("user_id", self.user_id), ("query", self.query)]
        return [*pairs, ("frequency", self.frequency), ("strategy", self.strategy)]

    def changes(self, source: Source) -> SourceChanges:
        """What differs from the saved ``source``."""
        seconds = parse_frequency(self.frequency) if self.frequency else None
        query = self.query.strip()
        return SourceChanges(
            add=[(c.strip(), n.strip() or c.strip()) for c, n in self.adds() if c.strip()],
            remove=[o for o, _, removed in self.rows() if removed],
            rename=[(o, n.strip()) for o, n, removed in self.rows() if not removed and n != o],
            user_id=self.user_id
            if self.user_id and self.user_id != user_id_column(source)
            else None,
            query=query if query and query != (source.mapping.query or "").strip() else None,
            frequency_seconds=seconds if seconds != source.frequency_seconds else None,
            strategy=self.strategy if self.strategy != source.strategy else None,
        )


@router.get("/sources/{name}/edit")
def edit_page(request: Request, name: str) -> Response:
    with store_session(request) as store:
        source = store.get_source(name)
        return _form(request, store, source, EditForm.of(source))


@router.post("/sources/{name}/edit")
def edit_post(
    request: Request,
    name: str,
    form: FormData = Depends(form_data),  # noqa: B008
) -> Response:
    action = str(form.get("action") or "review")
    draft = EditForm.read(form)
    if action in ("save", "save_resync"):
        return _save(request, name, draft, resync=action == "save_resync")
    with store_session(request) as store:
        source = store.get_source(name)
        if action == "edit":
            return _form(request, store, source, draft)
        try:
            changes = draft.changes(source)
            plan = plan_edit(store, name, changes, preview=True)
        except ProfilesyncError as exc:
            return _form(request, store, source, draft, error=str(exc), status_code=400)
    context = {"plan": plan, "report": plan.report, "draft": draft, "step": "review"}
    return render(request, "source_edit.html", {**_base(source), **context})


def _save(request: Request, name: str, draft: EditForm, *, resync: bool) -> Response:
    try:
        with write_session(request) as store:
            source = store.get_source(name)
            apply_edit(store, name, draft.changes(source))
    except ProfilesyncError as exc:
        with store_session(request) as store:
            source = store.get_source(name)
            failures = exc.failures if isinstance(exc, ChecksFailedError) else []
            return _form(
                request, store, source, draft, error=str(exc), failures=failures, status_code=400
            )
    notice = "edited"
    if resync:
        try:
            get_scheduler(request).sync_now(name, resync=True)
            notice = "resync"
        except ConcurrentSyncError:
            notice = "already"
    return RedirectResponse(f"/sources/{name}?notice={notice}", status_code=303)


def _form(
    request: Request,
    store: Store,
    source: Source,
    draft: EditForm,
    *,
    error: str | None = None,
    failures: list[str] | None = None,
    status_code: int = 200,
) -> Response:
    columns: list[dict[str, str]] = []
    if source.mapping.query is None and source.mapping.table != QUERY_TABLE:
        try:
            columns = views.table_columns(store, source.connection, source.mapping.table)
        except ProfilesyncError as exc:
            error = error or f"the table's columns cannot be listed: {exc}"
    frequencies = list(views.FREQUENCIES)
    if draft.frequency and draft.frequency not in frequencies:
        frequencies.append(draft.frequency)
    context: dict[str, Any] = {
        "draft": draft,
        "step": "form",
        "columns": columns,
        "frequencies": frequencies,
        "strategies": STRATEGIES,
        "error": error,
        "failures": failures or [],
    }
    return render(
        request, "source_edit.html", {**_base(source), **context}, status_code=status_code
    )


def _base(source: Source) -> dict[str, Any]:
    return {
        "active": "sources",
        "name": source.name,
        "source": source,
        "is_query": source.mapping.query is not None,
    }
