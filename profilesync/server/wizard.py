"""The guided "Add a source" flow: one form per step, each validated before the next.

The choices made so far travel in hidden fields (a :class:`Draft`), so the flow needs no
server-side state, survives a reload and works without JavaScript. Steps:
connection -> table (or query) -> mapping -> data (type and strategy) -> test -> save.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData

from profilesync.app import Store, connections
from profilesync.app.sources import open_connection, query_mapping
from profilesync.errors import (
    ConfigurationError,
    NotFoundError,
    ProfilesyncError,
    without_cli_advice,
)
from profilesync.mapping import QUERY_TABLE, from_columns
from profilesync.model import (
    DEFAULT_FREQUENCY_SECONDS,
    check_name,
    format_frequency,
    parse_frequency,
)
from profilesync.server import views
from profilesync.server.audit import note_change
from profilesync.server.deps import render, require_user, store_session
from profilesync.server.forms import form_data
from profilesync.server.frequencies import frequency_choices, test_report
from profilesync.server.kinds import all_kinds, kind_info

router = APIRouter(dependencies=[Depends(require_user)], include_in_schema=False)

STEPS = ("connection", "table", "mapping", "data", "test", "save")
LABELS = {
    "connection": "Set up connection",
    "table": "Select table",
    "mapping": "Column mapping",
    "data": "Select data",
    "test": "Test mapping",
    "save": "Name and frequency",
}
USER_ID_GUESSES = ("user_id", "userid", "uid", "user", "id")


@dataclass
class Draft:
    """The source being set up, as far as the steps so far have taken it."""

    connection: str = ""
    mode: str = "table"  # table | query
    table: str = ""
    query: str = ""
    user_id: str = ""
    prop_column: list[str] = field(default_factory=list)
    prop_name: list[str] = field(default_factory=list)
    strategy: str = ""
    name: str = ""
    frequency: str = format_frequency(DEFAULT_FREQUENCY_SECONDS)

    @classmethod
    def from_form(cls, form: FormData) -> Draft:
        draft = cls()
        for f in fields(cls):
            if f.name.startswith("prop_"):
                setattr(draft, f.name, [str(v) for v in form.getlist(f.name)])
            elif f.name in form:
                setattr(draft, f.name, str(form[f.name]).strip())
        return draft

    @property
    def props(self) -> list[tuple[str, str]]:
        names = self.prop_name + [""] * (len(self.prop_column) - len(self.prop_name))
        return list(zip(self.prop_column, names, strict=False))

    def hidden(self, *editing: str) -> list[tuple[str, str]]:
        """(name, value) pairs for the hidden inputs of every field this step does not edit."""
        pairs: list[tuple[str, str]] = []
        for f in fields(self):
            if f.name in editing:
                continue
            value = getattr(self, f.name)
            values = value if isinstance(value, list) else [value]
            pairs.extend((f.name, v) for v in values)
        return pairs

    def spec(self, frequency_seconds: int = DEFAULT_FREQUENCY_SECONDS) -> views.SourceSpec:
        query_mode = self.mode == "query"
        return views.SourceSpec(
            connection=self.connection,
            name=self.name,
            table=None if query_mode else self.table,
            query=self.query if query_mode else None,
            user_id=None if query_mode else self.user_id,
            properties=[] if query_mode else [(c, n.strip() or c) for c, n in self.props if c],
            strategy=self.strategy or "cdc",
            frequency_seconds=frequency_seconds,
        )


class StepError(Exception):
    """Validation failed: ``errors`` maps a field name (or ``"form"``) to its message."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(errors)
        self.errors = errors


@router.get("/sources/new")
def start(request: Request, kind: str = "", connection: str = "") -> Response:
    draft = Draft(connection=connection)
    if connection:
        with store_session(request) as store:
            store.get_connection(connection)
            return _render(request, store, "table", draft, {})
    with store_session(request) as store:
        return _render(request, store, "connection", draft, {}, kind=kind)


@router.post("/sources/new")
def advance(request: Request, form: FormData = Depends(form_data)) -> Response:  # noqa: B008
    draft = Draft.from_form(form)
    step = str(form.get("step", "connection"))
    action = str(form.get("action", "next"))
    if step not in STEPS:
        step = "connection"
    with store_session(request) as store:
        if action == "back":
            return _render(request, store, STEPS[max(STEPS.index(step) - 1, 0)], draft, {})
        try:
            target = _HANDLERS[step](store, draft, form, action)
        except StepError as exc:
            kind = str(form.get("kind", ""))
            return _render(
                request,
                store,
                step,
                draft,
                exc.errors,
                kind=kind,
                posted=_echo(form, kind),
                status=422,
            )
        if target == "saved":
            return RedirectResponse(f"/sources/{draft.name}?notice=created", status_code=303)
        if step == "connection" and action != "reuse":  # a new connection, saved (200)
            note_change(request.state, "connection.create", "connection", draft.connection)
        return _render(request, store, target, draft, {})


# -- each step's validation (returns the step to show next) ---------------------------------


def _connection(store: Store, draft: Draft, form: FormData, action: str) -> str:
    if action == "reuse":
        if not draft.connection:
            raise StepError({"connection": "Choose a connection to reuse."})
        found = _field_errors(
            lambda: connections.connection_test(store, draft.connection), "connection"
        )
        if not found.ok:  # said here, where another connection can be chosen or this one edited
            raise StepError({"connection": found.message, "reuse_failed": draft.connection})
        return "table"
    kind = str(form.get("kind", ""))
    info = kind_info(kind)
    name = str(form.get("conn_name", "")).strip()
    config = {f["name"]: str(form.get(f"cfg_{f['name']}", "")) for f in info["fields"]}
    errors = {
        f"cfg_{f['name']}": f"{f['label']} is required."
        for f in info["fields"]
        if f["required"] and not config[f["name"]].strip()
    }
    if not name:
        errors["conn_name"] = "Give the connection a name."
    if errors:
        raise StepError(errors)
    config = connections.clean_config(config)
    try:
        connections.new_connection(store, name, kind, config)
    except ProfilesyncError as exc:
        raise StepError({_blame(str(exc), info, name): ui_error(exc)}) from None
    anyway = action == "save_anyway"
    try:  # tried before it is saved; the answer stands beside a "Save anyway" button
        connection, _ = connections.add_connection(
            store, name, kind, config, save_anyway=anyway, anyway_hint=connections.UI_ANYWAY
        )
    except ProfilesyncError as exc:
        raise StepError({"save_anyway": ui_error(exc)}) from None
    draft.connection = connection.name
    return "table"  # saved anyway: the table step says the warehouse does not answer


def _echo(form: FormData, kind: str) -> dict[str, str]:
    """The connection form's values to show again after an error: never a secret."""
    if not kind:
        return {}
    secret = {f"cfg_{f['name']}" for f in kind_info(kind)["fields"] if f["secret"]}
    return {
        k: str(v)
        for k, v in form.items()
        if (k == "conn_name" or k.startswith("cfg_")) and k not in secret
    }


def _blame(message: str, info: dict[str, Any], name: str) -> str:
    """The form field an error message is about (by the setting it names)."""
    if "connection" in message and repr(name) in message:
        return "conn_name"
    for f in info["fields"]:
        if f["name"] in message or f["name"].replace("_", "-") in message:
            return f"cfg_{f['name']}"
    return "form"


def _table(store: Store, draft: Draft, form: FormData, action: str) -> str:
    draft.strategy = ""  # chosen again for this table: diff when its change feed is off
    warehouse = open_connection(store, draft.connection)
    try:
        if draft.mode == "query":
            if not draft.query:
                raise StepError({"query": "Write a query, or choose a table instead."})
            _field_errors(lambda: query_mapping(warehouse, draft.query), "query")
            return "mapping"
        if not draft.table:
            raise StepError({"table": "Choose a table (or write a query instead)."})
        _field_errors(lambda: warehouse.table_schema(draft.table), "table")
    finally:
        warehouse.close()
    return "mapping"


def _mapping(store: Store, draft: Draft, form: FormData, action: str) -> str:
    if action == "add_field":
        draft.prop_column.append("")
        draft.prop_name.append("")
        return "mapping"
    if action.startswith("remove_field:"):
        index = int(action.split(":", 1)[1])
        for values in (draft.prop_column, draft.prop_name):
            if index < len(values):
                values.pop(index)
        return "mapping"
    if draft.mode == "query":
        return "data"
    errors: dict[str, str] = {}
    if not draft.user_id:
        errors["user_id"] = "Choose the column that holds the user id."
    names: dict[str, int] = {}
    for i, (column, name) in enumerate(draft.props):
        shown = name.strip() or column
        if not column:
            errors[f"prop_column_{i}"] = "Choose a column, or remove this field."
        elif shown in names:
            errors[f"prop_name_{i}"] = f"“{shown}” is used twice: give it another display name."
        names.setdefault(shown, i)
    if errors:
        raise StepError(errors)
    try:
        mapping = from_columns(
            draft.table, draft.user_id, [(c, n.strip() or c) for c, n in draft.props]
        )
        store.check_property_names("", mapping)
    except ConfigurationError as exc:
        raise StepError({_prop_blame(exc.ui_message, draft): ui_error(exc)}) from None
    return "data"


def _prop_blame(message: str, draft: Draft) -> str:
    for i, (column, name) in enumerate(draft.props):
        if repr(name.strip() or column) in message:
            return f"prop_name_{i}"
    return "form"


def _data(store: Store, draft: Draft, form: FormData, action: str) -> str:
    allowed = [s["value"] for s in strategies(store, draft) if not s["disabled"]]
    if draft.strategy not in allowed:
        raise StepError({"strategy": f"Choose one of: {', '.join(allowed)}."})
    return "test"


def _test(store: Store, draft: Draft, form: FormData, action: str) -> str:
    if action == "test":
        return "test"
    report = test_report(store, draft)
    if not report["ok"]:
        raise StepError(
            {
                "form": "Test mapping has failures: fix them and test again, or go back and change the table or the strategy."
            }
        )
    return "save"


def _save(store: Store, draft: Draft, form: FormData, action: str) -> str:
    errors: dict[str, str] = {}
    try:
        draft.name = check_name(draft.name, "source")
        store.get_source(draft.name)
        errors["name"] = f"A source named “{draft.name}” exists already: pick another name."
    except NotFoundError:
        pass
    except ConfigurationError as exc:
        errors["name"] = str(exc)
    try:
        seconds = parse_frequency(draft.frequency)
    except ConfigurationError as exc:
        errors["frequency"] = str(exc)
    if errors:
        raise StepError(errors)
    try:
        views.create_source(store, draft.spec(seconds))
    except ProfilesyncError as exc:
        raise StepError({"frequency" if "frequen" in str(exc) else "form": ui_error(exc)}) from None
    return "saved"


_HANDLERS = {
    "connection": _connection,
    "table": _table,
    "mapping": _mapping,
    "data": _data,
    "test": _test,
    "save": _save,
}


def _field_errors(call: Any, field_name: str) -> Any:
    try:
        return call()
    except ProfilesyncError as exc:
        raise StepError({field_name: ui_error(exc)}) from None


# -- what each step shows ---------------------------------------------------------------------


def strategies(store: Store, draft: Draft) -> list[dict[str, Any]]:
    """The import strategies for this draft, the one to pre-select first: CDC where the
    warehouse supports it, the snapshot diff for a table whose change tracking is off."""
    info = kind_info(store.get_connection(draft.connection).kind)
    pushdown = draft.mode == "query" and _is_pushdown(store, draft)
    why_not = None
    if pushdown:
        why_not = "this query runs in the warehouse as written (joins, CTEs, ...), which only a snapshot diff can follow"
    elif not info["supports_cdc"]:
        why_not = f"{info['label']} has no change data capture in profilesync"
    cdc: dict[str, Any] = {
        "value": "cdc",
        "label": "Change data capture (cdc)",
        "help": "Each sync reads only what changed since the checkpoint.",
        "disabled": why_not is not None,
        "why_not": why_not,
    }
    diff: dict[str, Any] = {
        "value": "diff",
        "label": "Snapshot diff (diff)",
        "help": "Each sync reads the whole table and applies only rows that differ.",
        "disabled": False,
        "why_not": None,
    }
    if why_not is None and draft.mode != "query" and _feed_off(store, draft):
        cdc["help"] += (
            f" The change data feed of {draft.table} is off: Test mapping shows how to turn it"
            " on, then choose cdc."
        )
        diff["help"] += f" Pre-selected: {draft.table} has no change data feed for cdc to read."
        return [diff, cdc]
    return [cdc, diff]


def _feed_off(store: Store, draft: Draft) -> bool:
    """Whether the warehouse says, cheaply, that the draft's table has no change feed."""
    hint = _hints(store, draft.connection, [draft.table]).get(draft.table, "")
    return hint == connections.FEED_OFF


def _is_pushdown(store: Store, draft: Draft) -> bool:
    warehouse = open_connection(store, draft.connection)
    try:
        mapping = query_mapping(warehouse, draft.query)
    except ProfilesyncError:
        return False
    finally:
        warehouse.close()
    return mapping.table == QUERY_TABLE


def _context(store: Store, step: str, draft: Draft, kind: str) -> dict[str, Any]:
    """What the template of ``step`` needs beyond the draft."""
    if step == "connection":
        sources = store.list_sources()
        return {  # on a kind's tile, only the connections of that kind are offered again
            "connections": [
                views.connection_doc(c, sources)
                for c in store.list_connections()
                if not kind or c.kind == kind
            ],
            "kinds": all_kinds(),
            "kind": kind_info(kind) if kind else None,
        }
    if step == "table":
        tables = views.list_tables(store, draft.connection)
        return {"tables": tables, "hints": _hints(store, draft.connection, tables)}
    if step == "mapping":
        return _mapping_context(store, draft)
    if step == "data":
        choices = strategies(store, draft)
        allowed = [c["value"] for c in choices if not c["disabled"]]
        if draft.strategy not in allowed:  # CDC first where the warehouse supports it
            draft.strategy = allowed[0]
        return {"strategies": choices}
    if step == "test":
        return {"report": views.test_spec(store, draft.spec())}
    if step == "save":
        return {"choices": frequency_choices(store, draft)}
    return {}


def _hints(store: Store, connection: str, tables: list[str]) -> dict[str, str]:
    """Each table's change tracking where the warehouse tells it cheaply; none when it cannot."""
    try:
        return connections.table_hints(store, connection, tables)
    except ProfilesyncError:
        return {}


def _mapping_context(store: Store, draft: Draft) -> dict[str, Any]:
    if draft.mode == "query":
        warehouse = open_connection(store, draft.connection)
        try:
            mapping = query_mapping(warehouse, draft.query)
        finally:
            warehouse.close()
        return {"query_mapping": mapping}
    columns = views.table_columns(store, draft.connection, draft.table)
    names = [c["name"] for c in columns]
    if not draft.user_id:
        draft.user_id = next((g for g in USER_ID_GUESSES if g in names), "")
    return {"columns": columns}


def ui_error(exc: ProfilesyncError) -> str:
    """An error as a field or form message of the web UI: the cause, then the UI's fix."""
    fix = exc.ui_fix_for()
    message = exc.ui_message
    return f"{message.rstrip('.')}. {fix.label}." if fix else message


def _render(
    request: Request,
    store: Store,
    step: str,
    draft: Draft,
    errors: dict[str, str],
    *,
    kind: str = "",
    posted: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    try:
        if step == "test":
            extra = {"report": test_report(store, draft)}
        else:
            extra = _context(store, step, draft, kind)
    except ProfilesyncError as exc:
        # the warehouse refused what this step needs (e.g. a table vanished): say so here
        extra, errors = {}, {**errors, "form": ui_error(exc)}
        status = 422
    if step == "mapping" and errors.get("user_id"):
        draft.user_id = ""  # show the blank the error is about, not a guess
    errors = {key: without_cli_advice(message) for key, message in errors.items()}
    return render(
        request,
        "wizard.html",
        {
            "active": "add",
            "step": step,
            "steps": [(s, LABELS[s]) for s in STEPS],
            "step_index": STEPS.index(step),
            "draft": draft,
            "errors": errors,
            "posted": posted or {},
            **extra,
        },
        status,
    )
