"""Source use cases: resolve a mapping, Test mapping, add, change, pause/resume, delete.

One JSON shape for a source (:func:`source_doc`) serves ``source add/list --json`` and the
REST API; the server adds its scheduling state (next run, paused, stopped) to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from profilesync.app import _engine as engine
from profilesync.app import alerts
from profilesync.app._warehouses import Check, Warehouse, open_warehouse
from profilesync.app.home import Store, json_value
from profilesync.errors import ConfigurationError, ProfilesyncError
from profilesync.mapping import QUERY_TABLE
from profilesync.model import (
    DEFAULT_FREQUENCY_SECONDS,
    Connection,
    Mapping,
    Source,
    check_name,
    format_frequency,
)

#: the frequencies the UI offers, shortest first
FREQUENCIES = ("15m", "30m", "1h", "3h", "6h", "12h", "1d", "7d")
#: the default frequency as the CLI flag and the API field spell it
DEFAULT_FREQUENCY = format_frequency(DEFAULT_FREQUENCY_SECONDS)
STRATEGIES = ("cdc", "diff")


@dataclass
class SourceSpec:
    """A source as flags, a form or a JSON body describe it, before it is resolved and saved."""

    connection: str
    name: str = ""
    table: str | None = None
    query: str | None = None
    user_id: str | None = None
    properties: list[tuple[str, str]] = field(default_factory=list)
    strategy: str = "cdc"
    frequency_seconds: int = DEFAULT_FREQUENCY_SECONDS


class ChecksFailedError(ConfigurationError):
    """Test mapping failed, so the source was not saved; ``failures`` has one line per check."""

    def __init__(self, failures: list[str]) -> None:
        super().__init__("Test mapping failed, the source was not saved: " + "; ".join(failures))
        self.failures = failures


class NotReleasedError(ProfilesyncError):
    """The warehouse side of a source could not be freed, so the source was not deleted.

    Answers with the status of the warehouse's own error (``cause``).
    """

    def __init__(self, cause: ProfilesyncError, force_hint: str) -> None:
        super().__init__(
            f"{cause} — the source was not deleted; fix the connection, or {force_hint} "
            "to delete it anyway and free the warehouse side by hand"
        )
        self.cause = cause
        self.code = cause.code
        self.retriable = cause.retriable


def resolve(store: Store, spec: SourceSpec) -> tuple[Source, Warehouse]:
    """The unsaved source of ``spec`` and its open warehouse (close it when done)."""
    if spec.strategy not in STRATEGIES:
        raise ConfigurationError(f"import strategy {spec.strategy!r}: choose cdc or diff")
    warehouse = open_warehouse(store.get_connection(spec.connection), spec.name)
    try:
        mapping = engine.resolve_mapping(
            warehouse,
            table=spec.table or None,
            query=spec.query or None,
            user_id=spec.user_id or None,
            properties=spec.properties,
            strategy=spec.strategy,
        )
        if spec.strategy == "cdc" and mapping.table == QUERY_TABLE:
            raise ConfigurationError(
                "this query runs in the warehouse as written, which only a snapshot diff can "
                "follow: choose the import strategy diff"
            )
    except BaseException:
        warehouse.close()
        raise
    source = Source(
        name=spec.name,
        connection=spec.connection,
        mapping=mapping,
        strategy=spec.strategy,  # type: ignore[arg-type]
        frequency_seconds=spec.frequency_seconds,
    )
    return source, warehouse


def open_connection(store: Store, connection: str, source_name: str = "") -> Warehouse:
    """The warehouse of a saved connection, open (close it when done): for a page that asks it
    several things in one request."""
    return open_warehouse(store.get_connection(connection), source_name)


def query_mapping(warehouse: Warehouse, query: str) -> Mapping:
    """A query source's mapping: always a snapshot diff of the query's result."""
    return engine.resolve_mapping(
        warehouse, table=None, query=query, user_id=None, properties=[], strategy="diff"
    )


def test_spec(store: Store, spec: SourceSpec) -> dict[str, Any]:
    """Test mapping of an unsaved source (nothing is written)."""
    source, warehouse = resolve(store, spec)
    warehouse.close()
    return engine.test_mapping(store, source)


def test_source(store: Store, name: str) -> dict[str, Any]:
    """Test mapping of a saved source: checks, fix SQL, a preview and would-be rejects."""
    return engine.test_mapping(store, store.get_source(name))


def add_source(
    store: Store, spec: SourceSpec, *, no_check: bool = False
) -> tuple[Source, list[Check]]:
    """Save a source once Test mapping's checks pass (all of them skipped with ``no_check``).

    Returns the saved source and the checks that ran; raises :class:`ChecksFailedError`.
    """
    spec.name = check_name(spec.name, "source")
    source, warehouse = resolve(store, spec)
    try:
        store.check_property_names(source.name, source.mapping)
        checks = [] if no_check else engine.source_checks(warehouse, source)
    finally:
        warehouse.close()
    if failed := engine.failures(checks):
        raise ChecksFailedError(failed)
    return store.add_source(source), checks


def source_doc(store: Store, source: Source) -> dict[str, Any]:
    """A source as JSON: its mapping, strategy, frequency, checkpoint and last run."""
    runs = store.runs(source.name, limit=1)
    connection = store.get_connection(source.connection)
    return {
        "name": source.name,
        "connection": source.connection,
        "kind": connection.kind,
        "table": source.mapping.table,
        "query": source.mapping.query,
        "user_id": source.mapping.user_id,
        "properties": [
            {"name": p.name, "expression": p.expression, "column": p.column}
            for p in source.mapping.properties
        ],
        "strategy": source.strategy,
        "data_type": source.data_type,
        "frequency": format_frequency(source.frequency_seconds),
        "frequency_seconds": source.frequency_seconds,
        "paused": source.paused,
        "checkpoint": source.checkpoint.to_json() if source.checkpoint else None,
        "resync_pending": engine.pending_resync(store, source),
        "created_at": json_value(source.created_at),
        "last_run": runs[0] if runs else None,
    }


def list_sources(store: Store) -> list[Source]:
    return store.list_sources()


def get_source(store: Store, name: str) -> Source:
    return store.get_source(name)


def set_frequency(store: Store, name: str, seconds: int) -> Source:
    """Change how often a source syncs; refused when the warehouse's retention cannot cover it."""
    check_frequency(store, store.get_source(name), seconds)
    return store.update_source(name, frequency_seconds=seconds)


def pause(store: Store, name: str) -> Source:
    """Stop scheduled syncs of a source (a sync asked for by hand still runs)."""
    return store.update_source(name, paused=True)


def resume(store: Store, name: str) -> Source:
    """Let scheduled syncs of a source run again."""
    return store.update_source(name, paused=False)


def check_frequency(store: Store, source: Source, seconds: int) -> None:
    """Refuse a frequency the warehouse's change retention cannot cover."""
    problems = frequency_problems(store, source, [seconds]).get(seconds)
    if problems:
        raise ConfigurationError(
            f"frequency {format_frequency(seconds)} is longer than the table's change retention: "
            + "; ".join(c.message for c in problems)
        )


def frequency_problems(store: Store, source: Source, choices: list[int]) -> dict[int, list[Check]]:
    """For each frequency, the failing checks it adds over the shortest one (retention).

    Longest first: once one passes, every shorter one passes too.
    """
    return retention_problems(store.get_connection(source.connection), source, choices)


def retention_problems(
    connection: Connection, source: Source, choices: list[int]
) -> dict[int, list[Check]]:
    """:func:`frequency_problems` with the source's connection already read: all warehouse
    I/O and no store, so a caller can run it without holding the store."""
    warehouse = open_warehouse(connection, source.name)
    try:
        # one inspection (all the warehouse I/O), then pure rules for each choice
        inspection = warehouse.inspect(source.mapping, source.strategy)

        def failing(seconds: int) -> dict[str, Check]:
            checks = warehouse.judge(inspection, seconds, source.strategy)
            return {c.name: c for c in checks if c.level == "fail"}

        base = set(failing(60))
        out: dict[int, list[Check]] = {}
        for seconds in sorted(choices, reverse=True):
            extra = [c for n, c in failing(seconds).items() if n not in base]
            if not extra:
                break
            out[seconds] = extra
        return out
    finally:
        warehouse.close()


def delete_source(
    store: Store, name: str, *, force: bool = False, force_hint: str = "add --force"
) -> str | None:
    """Free what the source holds in the warehouse (a Postgres slot), then drop the source
    and every property it gave to profiles.

    When the warehouse cannot be reached the source stays (:class:`NotReleasedError`,
    whose message names ``force_hint``), unless ``force``: then it goes anyway and the
    warehouse's error comes back as a warning to show.
    """
    source = store.get_source(name)
    warehouse = open_warehouse(store.get_connection(source.connection), name)
    warning = None
    try:
        warehouse.release(source.mapping)
    except ProfilesyncError as exc:
        if not force:
            raise NotReleasedError(exc, force_hint) from exc
        warning = str(exc)
    finally:
        warehouse.close()
    store.delete_source(name)
    alerts.forget_source(store, name)  # a new source of this name starts afresh
    return warning


def delete_explanation(store: Store, source: Source) -> list[str]:
    """What deleting ``source`` does, in the words the delete page shows."""
    users = store_users(store, source)
    kind = store.get_connection(source.connection).kind
    lines = [
        f"The properties {', '.join(source.mapping.property_names) or '(none)'} are removed from "
        f"every profile that has them ({users:,} users have a row from this source).",
        "Profiles keep the properties other sources give them; a user left with none has no profile.",
        "Scheduled syncs stop. The run history stays. The warehouse table is not touched.",
    ]
    if kind == "postgres":
        lines.append(
            "The source's logical replication slot is dropped on the Postgres server; "
            "an abandoned slot would hold WAL there and fill its disk."
        )
    return lines


def store_users(store: Store, source: Source) -> int:
    """How many users have a row from ``source`` in the store."""
    return store.profile_count(source)
