"""The REST API under ``/api``: what the CLI and the UI do, as JSON.

Errors come back as ``{"code", "message"}`` (see ``app.STATUS`` for the HTTP status of
each). Secret connection settings are accepted but never returned.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from profilesync.app import connections, sources
from profilesync.errors import ConfigurationError
from profilesync.model import parse_frequency
from profilesync.server import views
from profilesync.server.deps import get_scheduler, require_token, store_session, write_session
from profilesync.server.kinds import all_kinds

router = APIRouter(prefix="/api", dependencies=[Depends(require_token)])


class ConnectionIn(BaseModel):
    name: str = Field(examples=["lake"])
    kind: str = Field(examples=["delta"])
    config: dict[str, Any] = Field(
        default_factory=dict,
        examples=[{"path": "/data/lake"}],
        description="Settings of the kind; secrets (passwords, tokens, keys) are write-only.",
    )
    save_anyway: bool = Field(
        False, description="Save without trying the warehouse (it is down on purpose)."
    )


class ConnectionPatch(BaseModel):
    config: dict[str, Any] = Field(
        default_factory=dict,
        examples=[{"schema": "gold", "access_token": "dapi..."}],
        description="Settings to change, merged into the stored ones; a blank or null value "
        "removes a setting, except a secret's, which keeps its stored value.",
    )
    unset: list[str] = Field(
        default_factory=list, description="Settings (secrets too) to remove.", examples=[[]]
    )
    save_anyway: bool = Field(
        False, description="Save without trying the warehouse (it is down on purpose)."
    )


class PropertyIn(BaseModel):
    column: str
    name: str | None = Field(None, description="Display name; defaults to the column.")


class SourceIn(BaseModel):
    """A table with ``user_id`` and ``properties``, or a profile ``query``."""

    name: str = ""
    connection: str
    table: str | None = None
    query: str | None = Field(
        None, examples=['SELECT uid AS "user_id", title AS "Title" FROM prod.users']
    )
    user_id: str | None = Field(None, description="The column holding the user id (with table).")
    properties: list[PropertyIn] = Field(default_factory=list)
    strategy: Literal["cdc", "diff"] = "cdc"
    frequency: str = Field(sources.DEFAULT_FREQUENCY, examples=["30m", "12h", "1d"])

    def spec(self) -> views.SourceSpec:
        return views.SourceSpec(
            connection=self.connection,
            name=self.name,
            table=self.table,
            query=self.query,
            user_id=self.user_id,
            properties=[(p.column, p.name or p.column) for p in self.properties],
            strategy=self.strategy,
            frequency_seconds=parse_frequency(self.frequency),
        )


class SourcePatch(BaseModel):
    """Any of: frequency, paused, and edits of the mapping (checked by Test mapping first)."""

    frequency: str | None = Field(None, examples=["6h"])
    paused: bool | None = None
    add_properties: list[PropertyIn] = Field(
        default_factory=list, description="Columns to add; back-filled by a resync."
    )
    remove_properties: list[str] = Field(
        default_factory=list, description="Display names to drop from every profile now."
    )
    rename_properties: dict[str, str] = Field(
        default_factory=dict,
        examples=[{"Title": "Job title"}],
        description="Old display name -> new one, renamed in place.",
    )
    user_id: str | None = Field(
        default=None,
        description="The column holding the user id; re-keys every profile by a resync.",
    )
    query: str | None = Field(default=None, description="The new profile query (query sources).")
    strategy: Literal["cdc", "diff"] | None = None

    def changes(self) -> Any:
        """The edit as :class:`profilesync.app.edit.SourceChanges` (frequency included)."""
        from profilesync.app.edit import SourceChanges

        return SourceChanges(
            add=[(p.column, p.name or p.column) for p in self.add_properties],
            remove=list(self.remove_properties),
            rename=list(self.rename_properties.items()),
            user_id=self.user_id,
            query=self.query,
            frequency_seconds=parse_frequency(self.frequency) if self.frequency else None,
            strategy=self.strategy,
        )

    def edits_mapping(self) -> bool:
        return bool(
            self.add_properties
            or self.remove_properties
            or self.rename_properties
            or self.user_id
            or self.query
            or self.strategy
        )


# -- connections ------------------------------------------------------------------------


@router.get("/kinds", tags=["connections"], summary="Warehouse kinds and their settings")
def kinds() -> list[dict[str, Any]]:
    return all_kinds()


@router.get("/connections", tags=["connections"], summary="List connections (no secrets)")
def list_connections(request: Request) -> list[dict[str, Any]]:
    with store_session(request) as store:
        sources = store.list_sources()
        return [views.connection_doc(c, sources) for c in store.list_connections()]


@router.post(
    "/connections",
    tags=["connections"],
    status_code=201,
    summary="Add a connection (saved once its tables could be listed)",
    description="The warehouse is opened and its tables listed first; when that fails, or "
    "finds no table, nothing is saved and the error says why. `save_anyway` saves it "
    "untried. The answer lists the tables found (`null` when untried).",
)
def add_connection(request: Request, body: ConnectionIn) -> dict[str, Any]:
    with store_session(request) as store:
        connection, found = connections.add_connection(
            store,
            body.name,
            body.kind,
            connections.clean_config(body.config),
            save_anyway=body.save_anyway,
            anyway_hint=connections.API_ANYWAY,
        )
        return {**views.connection_doc(connection, store.list_sources()), "tables": found}


@router.get("/connections/{name}", tags=["connections"], summary="One connection (no secrets)")
def get_connection(request: Request, name: str) -> dict[str, Any]:
    with store_session(request) as store:
        return views.connection_doc(store.get_connection(name), store.list_sources())


@router.patch(
    "/connections/{name}",
    tags=["connections"],
    summary="Change a connection (saved once the changed settings connect)",
    description="Tried like a new connection before anything is saved; `save_anyway` "
    "saves it untried. Sources using it read through the new settings from their next sync.",
)
def update_connection(request: Request, name: str, body: ConnectionPatch) -> dict[str, Any]:
    with write_session(request) as store:
        connection, found = connections.edit_connection(
            store,
            name,
            body.config,
            unset=body.unset,
            save_anyway=body.save_anyway,
            anyway_hint=connections.API_ANYWAY,
        )
        return {**views.connection_doc(connection, store.list_sources()), "tables": found}


@router.post(
    "/connections/{name}/test",
    tags=["connections"],
    summary="Test a connection: open the warehouse and list its tables",
    description="`ok` false with the warehouse's answer in `message` (one line) and its "
    "`code` when it fails; nothing is changed either way.",
)
def test_connection(request: Request, name: str) -> dict[str, Any]:
    with store_session(request) as store:
        connection = store.get_connection(name)
    # the warehouse may take its time to answer: the store is not held meanwhile
    return connections.try_connection(connection).to_json()


@router.delete(
    "/connections/{name}", tags=["connections"], status_code=204, summary="Delete a connection"
)
def delete_connection(request: Request, name: str) -> None:
    with store_session(request) as store:
        store.delete_connection(name)


@router.get("/connections/{name}/tables", tags=["connections"], summary="Tables it can read")
def tables(request: Request, name: str) -> list[str]:
    with store_session(request) as store:
        return views.list_tables(store, name)


@router.get(
    "/connections/{name}/tables/{table}/columns",
    tags=["connections"],
    summary="Columns of a table, with their types",
)
def columns(request: Request, name: str, table: str) -> list[dict[str, str]]:
    with store_session(request) as store:
        return views.table_columns(store, name, table)


# -- sources ----------------------------------------------------------------------------


@router.get("/sources", tags=["sources"], summary="Sources with last run, next run and state")
def list_sources(request: Request) -> list[dict[str, Any]]:
    scheduler = get_scheduler(request)
    with store_session(request) as store:
        return [views.source_doc(store, scheduler, s) for s in store.list_sources()]


@router.post(
    "/sources/test",
    tags=["sources"],
    summary="Test mapping of an unsaved source: checks, fix SQL, preview, rejected rows",
)
def test_unsaved(request: Request, body: SourceIn) -> dict[str, Any]:
    with store_session(request) as store:
        return views.test_spec(store, body.spec())


@router.post(
    "/sources",
    tags=["sources"],
    status_code=201,
    summary="Add a source (refused when Test mapping's checks fail)",
)
def add_source(request: Request, body: SourceIn) -> dict[str, Any]:
    scheduler = get_scheduler(request)
    with store_session(request) as store:
        source = views.create_source(store, body.spec())
        return views.source_doc(store, scheduler, source)


@router.get("/sources/{name}", tags=["sources"], summary="One source")
def get_source(request: Request, name: str) -> dict[str, Any]:
    with store_session(request) as store:
        return views.source_doc(store, get_scheduler(request), store.get_source(name))


@router.patch(
    "/sources/{name}",
    tags=["sources"],
    summary="Change the mapping, query, strategy or frequency; pause/resume",
    description="Mapping edits run Test mapping's checks first and are refused when one fails. "
    '`dry_run=true` saves nothing and answers `{"plan"}`: what the change does to the '
    "profiles (`lines`), whether the next sync becomes a resync, and the checks. A saved edit "
    "answers the source with the `plan` it followed.",
)
def update_source(
    request: Request, name: str, body: SourcePatch, dry_run: bool = False
) -> dict[str, Any]:
    from profilesync.app import edit

    scheduler = get_scheduler(request)
    if dry_run:
        with store_session(request) as store:
            return {"plan": edit.plan_edit(store, name, body.changes()).to_json()}
    with write_session(request) as store:
        source = store.get_source(name)
        edited: dict[str, Any] = {}
        if body.edits_mapping():
            _, plan, warning = edit.apply_edit(store, name, body.changes())
            edited = {"plan": plan.to_json(), "warning": warning}
        elif body.frequency is not None:
            seconds = parse_frequency(body.frequency)
            views.check_frequency(store, source, seconds)
            store.update_source(name, frequency_seconds=seconds)
        if body.paused is True:  # after an edit too: the body is applied whole
            store.update_source(name, paused=True)
        elif body.paused is False:
            scheduler.resume(name)
        return {**views.source_doc(store, scheduler, store.get_source(name)), **edited}


@router.post("/sources/{name}/pause", tags=["sources"], summary="Pause scheduled syncs")
def pause(request: Request, name: str) -> dict[str, Any]:
    return update_source(request, name, SourcePatch(frequency=None, paused=True))


@router.post(
    "/sources/{name}/resume",
    tags=["sources"],
    summary="Resume scheduled syncs (also lifts a stop after a failure that needed a person)",
)
def resume(request: Request, name: str) -> dict[str, Any]:
    return update_source(request, name, SourcePatch(frequency=None, paused=False))


@router.delete(
    "/sources/{name}",
    tags=["sources"],
    status_code=204,
    summary="Delete a source and every property it gave (drops a Postgres slot)",
    description="`force=true` deletes it even when the warehouse cannot be reached to free "
    "what the source holds there (a Postgres replication slot then stays: drop it by hand).",
)
def delete_source(request: Request, name: str, force: bool = False) -> None:
    with write_session(request) as store:
        views.delete_source(store, get_scheduler(request), name, force=force)


@router.post("/sources/{name}/test", tags=["sources"], summary="Test mapping of a saved source")
def test_saved(request: Request, name: str) -> dict[str, Any]:
    with store_session(request) as store:
        return sources.test_source(store, name)


@router.post(
    "/sources/{name}/sync",
    tags=["sources"],
    summary="Sync now (queued; `wait=true` runs it and returns the run)",
    responses={202: {"description": "queued"}},
)
def sync_now(request: Request, name: str, resync: bool = False, wait: bool = False) -> Any:
    scheduler = get_scheduler(request)
    if wait:
        result = scheduler.run(name, resync=resync)
        if result is None:
            raise ConfigurationError(f"source {name!r} is being synced by another process")
        return result.to_json()
    scheduler.sync_now(name, resync=resync)
    return JSONResponse({"queued": True, "source": name, "resync": resync}, status_code=202)


@router.post("/sources/{name}/resync", tags=["sources"], summary="Resync: diff against the store")
def resync(request: Request, name: str, wait: bool = False) -> Any:
    return sync_now(request, name, resync=True, wait=wait)


# -- runs ----------------------------------------------------------------------------------


@router.get("/sources/{name}/runs", tags=["runs"], summary="Run history, newest first")
def runs(request: Request, name: str, limit: int = 20) -> list[dict[str, Any]]:
    with store_session(request) as store:
        store.get_source(name)
        return store.runs(name, limit)


@router.get(
    "/runs/{run_id}/rejected", tags=["runs"], summary="Rejected rows of a run, with reasons"
)
def rejected(request: Request, run_id: int, limit: int = 100) -> list[dict[str, Any]]:
    with store_session(request) as store:
        return store.rejected_rows(run_id, limit)


# -- profiles, properties, usage ----------------------------------------------------------------


@router.get(
    "/profiles/{user_id}", tags=["profiles"], summary="A profile: values, sources, synced at"
)
def profile(request: Request, user_id: str) -> dict[str, Any]:
    with store_session(request) as store:
        return store.get_profile(user_id, detail=True)


@router.get("/properties", tags=["properties"], summary="Every profile property")
def list_properties(request: Request) -> list[dict[str, Any]]:
    with store_session(request) as store:
        return views.properties(store)


@router.delete(
    "/properties/{name}",
    tags=["properties"],
    status_code=204,
    summary="Remove a property from its source's mapping and from the store",
)
def remove_property(request: Request, name: str) -> None:
    with write_session(request) as store:
        views.remove_property(store, name)


@router.get("/usage", tags=["usage"], summary="Operations this month by source and by day")
def usage(request: Request) -> dict[str, Any]:
    with store_session(request) as store:
        return views.usage(store)
