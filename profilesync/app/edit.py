"""Edit a saved source: add, remove or rename properties, change the user id column, the
query, the frequency or the import strategy.

:func:`plan_edit` says, before anything is saved, what the change does to the profiles
(a new property is back-filled by a resync, a removed one is dropped now, a rename is made
in place, a new user id re-keys every profile) and runs Test mapping's checks on the new
mapping. :func:`apply_edit` saves only when those checks pass. An edit that needs a
back-fill marks the source "resync pending": its next sync, whoever starts it, is a resync
that diffs the warehouse against the store and meters only the rows that really change.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import sqlglot
from sqlglot import exp

from profilesync.app import _engine as engine
from profilesync.app._warehouses import open_warehouse, warehouse_class
from profilesync.app.home import Store
from profilesync.app.sources import STRATEGIES, ChecksFailedError, SourceSpec, resolve
from profilesync.errors import ConfigurationError, NotFoundError, ProfilesyncError
from profilesync.mapping import QUERY_TABLE
from profilesync.model import Source, format_frequency

__all__ = [
    "EditPlan",
    "SourceChanges",
    "apply_edit",
    "pending_resync",
    "plan_edit",
    "user_id_column",
]

#: ``{"reasons", "at"}`` when the next sync of a source runs as a resync, else None
pending_resync = engine.pending_resync

#: what a back-fill costs, said once for every change that needs one
METERED = "the resync meters an operation for each profile whose values change"


@dataclass
class SourceChanges:
    """What to change in a saved source; anything left empty stays as it is."""

    add: list[tuple[str, str]] = field(default_factory=list)  # (column, display name)
    remove: list[str] = field(default_factory=list)  # display names
    rename: list[tuple[str, str]] = field(default_factory=list)  # (display name, new name)
    user_id: str | None = None  # the column holding the user id (table sources)
    query: str | None = None  # the new profile query (query sources)
    frequency_seconds: int | None = None
    strategy: str | None = None

    def empty(self) -> bool:
        return not (
            self.add
            or self.remove
            or self.rename
            or self.user_id
            or self.query
            or self.frequency_seconds
            or self.strategy
        )


@dataclass
class EditPlan:
    """What an edit does, checked but not saved: one ``(subject, effect)`` per change."""

    before: Source
    after: Source
    effects: list[tuple[str, str]]
    #: why the next sync must be a resync (empty: no back-fill needed)
    resync_reasons: list[str]
    checks: list[dict[str, Any]]
    removed: list[str]
    renamed: list[tuple[str, str]]
    #: Test mapping of the new mapping (checks, preview, rejected rows), when asked for
    report: dict[str, Any] | None = None

    @property
    def failures(self) -> list[str]:
        """Each failed check as one line, with the SQL that fixes it."""
        return [
            f"{c['name']}: {c['message']}" + (f" (run: {c['fix_sql']})" if c.get("fix_sql") else "")
            for c in self.checks
            if c["level"] == "fail"
        ]

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def changed(self) -> bool:
        return bool(self.effects)

    @property
    def lines(self) -> list[str]:
        return [f"{subject}: {effect}" for subject, effect in self.effects] or ["nothing changes"]

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.before.name,
            "changes": [{"subject": s, "effect": e} for s, e in self.effects],
            "lines": self.lines,
            "resync": bool(self.resync_reasons),
            "resync_reasons": self.resync_reasons,
            "ok": self.ok,
            "checks": self.checks,
            "before": _summary(self.before),
            "after": _summary(self.after),
        }


def plan_edit(
    store: Store, name: str, changes: SourceChanges, *, preview: bool = False
) -> EditPlan:
    """What ``changes`` would do to source ``name`` and its profiles; nothing is saved.

    The new mapping is resolved against the warehouse (columns must exist) and Test
    mapping's checks run on it; with ``preview`` the whole Test mapping runs (a sample,
    the preview rows and the rows that would be rejected) and lands in ``report``.
    """
    before = store.get_source(name)
    if changes.strategy is not None and changes.strategy not in STRATEGIES:
        raise ConfigurationError(f"import strategy {changes.strategy!r}: choose cdc or diff")
    _check_names(before, changes)
    dialect = warehouse_class(store.get_connection(before.connection).kind).dialect
    unsaved, warehouse = resolve(store, _spec(before, changes, dialect))
    after = replace(
        unsaved,
        id=before.id,
        checkpoint=before.checkpoint,
        paused=before.paused,
        created_at=before.created_at,
    )
    try:
        checks = (
            []
            if preview
            else [_names_check(store, after)]
            + [c.to_json() for c in engine.source_checks(warehouse, after)]
        )
    finally:
        warehouse.close()
    report = engine.test_mapping(store, after) if preview else None
    checks = list(report["checks"]) if report else checks
    effects, reasons = _effects(store, before, after, changes)
    return EditPlan(
        before=before,
        after=after,
        effects=effects,
        resync_reasons=reasons,
        checks=checks,
        removed=[n for n in before.mapping.property_names if n in _removed(before, after, changes)],
        renamed=list(changes.rename),
        report=report,
    )


def apply_edit(
    store: Store, name: str, changes: SourceChanges, *, plan: EditPlan | None = None
) -> tuple[Source, EditPlan, str | None]:
    """Save ``changes`` once Test mapping's checks pass on the new mapping.

    Returns the saved source, the plan it followed and a warning to show (the warehouse
    side could not be freed after a switch to diff). Raises :class:`ChecksFailedError`.
    The store saves the whole edit at once (see ``Store.edit_source``): a failure partway
    leaves the source, its mapping and its profiles as they were.
    """
    plan = plan or plan_edit(store, name, changes)
    if plan.failures:
        raise ChecksFailedError(plan.failures)
    if not plan.changed:
        return plan.before, plan, None
    saved = store.edit_source(
        plan.before,
        plan.after.mapping,
        drops=plan.removed,
        renames=plan.renamed,
        resync=plan.resync_reasons,
        strategy=plan.after.strategy,
        frequency_seconds=plan.after.frequency_seconds,
    )
    return saved, plan, _release_after_diff(store, plan)


def user_id_column(source: Source) -> str | None:
    """The column holding the user id of a table source (None for a query source)."""
    if source.mapping.query is not None:
        return None
    text = source.mapping.user_id
    if len(text) > 1 and text[0] == text[-1] == '"':
        return text[1:-1].replace('""', '"')
    return text


# -- the new mapping ------------------------------------------------------------------------


def _check_names(source: Source, changes: SourceChanges) -> None:
    """Every property named by an edit exists, and a rename never lands on another one."""
    names = source.mapping.property_names
    for name in [*changes.remove, *(old for old, _ in changes.rename)]:
        if name not in names:
            raise NotFoundError(
                f"source {source.name!r} has no property {name!r} "
                f"(it has: {', '.join(names) or 'none'})"
            )
    for old, new in changes.rename:
        if not new.strip():
            raise ConfigurationError(f"rename {old!r}: give the new display name (OLD=NEW)")
        taken = next((n for n in names if n != old and n.lower() == new.lower()), None)
        if taken is not None:
            raise ConfigurationError(
                f"cannot rename {old!r} to {new!r}: source {source.name!r} has a property "
                f"{taken!r} already (names ignore case; remove it first, or pick another name)"
            )


def _spec(source: Source, changes: SourceChanges, dialect: str) -> SourceSpec:
    base = SourceSpec(
        connection=source.connection,
        name=source.name,
        strategy=changes.strategy or source.strategy,
        frequency_seconds=changes.frequency_seconds or source.frequency_seconds,
    )
    if source.mapping.query is not None:
        if changes.user_id:
            raise ConfigurationError(
                f'source {source.name!r} reads a query: its user id is the query\'s "user_id" '
                "column; change the query instead"
            )
        query = changes.query or source.mapping.query
        base.query = _edited_query(query, changes, dialect)
        return base
    if changes.query:
        raise ConfigurationError(
            f"source {source.name!r} reads the table {source.mapping.table}, not a query: "
            "add a new source for the query and delete this one"
        )
    renames = dict(changes.rename)
    kept = [
        (p.column or p.name, renames.get(p.name, p.name))
        for p in source.mapping.properties
        if p.name not in changes.remove
    ]
    base.table = source.mapping.table
    base.user_id = changes.user_id or user_id_column(source)
    base.properties = kept + [(c.strip(), n.strip() or c.strip()) for c, n in changes.add]
    return base


def _edited_query(query: str, changes: SourceChanges, dialect: str) -> str:
    """The query with properties dropped, renamed (aliases) and added (``col AS "Name"``)."""
    if not (changes.remove or changes.rename or changes.add):
        return query
    try:
        tree = sqlglot.parse_one(query, read=dialect)
    except sqlglot.errors.SqlglotError:
        tree = None
    if not isinstance(tree, exp.Select):
        raise ConfigurationError(
            "this query cannot be edited column by column: change the query text instead"
        )
    renames = dict(changes.rename)
    kept: list[exp.Expr] = []
    for projection in tree.expressions:
        name = projection.alias_or_name
        if name in changes.remove:
            continue
        if name in renames:
            inner = projection.this if isinstance(projection, exp.Alias) else projection
            projection = exp.alias_(inner.copy(), renames[name], quoted=True)
        kept.append(projection)
    for column, display in changes.add:
        kept.append(
            exp.alias_(exp.column(column.strip(), quoted=True), display or column, quoted=True)
        )
    return tree.select(*kept, append=False).sql(dialect=dialect, pretty=True)


# -- checks -----------------------------------------------------------------------------


def _names_check(store: Store, source: Source) -> dict[str, Any]:
    try:
        store.check_property_names(source.name, source.mapping)
    except ConfigurationError as exc:
        return {"name": "property names", "level": "fail", "message": str(exc), "fix_sql": None}
    return {
        "name": "property names",
        "level": "pass",
        "message": "unique across sources",
        "fix_sql": None,
    }


# -- what the change does -----------------------------------------------------------------


def _removed(before: Source, after: Source, changes: SourceChanges) -> set[str]:
    renamed = {old for old, _ in changes.rename}
    return {n for n in before.mapping.property_names if n not in after.mapping.property_names} - (
        renamed
    )


def _effects(
    store: Store, before: Source, after: Source, changes: SourceChanges
) -> tuple[list[tuple[str, str]], list[str]]:
    """One ``(subject, effect)`` per change, and the reasons for a resync (if any)."""
    synced = before.checkpoint is not None
    fill = (
        f"back-filled by a resync at the next sync; {METERED}"
        if synced
        else "filled by the first sync"
    )
    effects: list[tuple[str, str]] = []
    reasons: list[str] = []
    old = {p.name: p for p in before.mapping.properties}
    new = {p.name: p for p in after.mapping.properties}
    renames = dict(changes.rename)
    stats = store.property_stats(before) if synced else {}
    for name in [n for n in old if n in _removed(before, after, changes)]:
        users = stats[name].users if name in stats else 0
        effects.append(
            (name, f"dropped from every profile now ({users:,} have a value; no operations)")
        )
    for name, target in renames.items():
        effects.append((f"display name {name} -> {target}", "renamed in place (no operations)"))
        if new[target].expression != old[name].expression:
            effects.append((f"{target} (changed)", f"re-read from the warehouse: {fill}"))
            reasons.append(f"property {target} reads another column")
    for name, prop in new.items():
        if name in renames.values():
            continue
        if name not in old:
            effects.append((f"{name} (new)", fill))
            reasons.append(f"new property {name}")
        elif prop.expression != old[name].expression:
            effects.append((f"{name} (changed)", f"re-read from the warehouse: {fill}"))
            reasons.append(f"property {name} reads another column")
    reasons += _source_effects(store, before, after, effects)
    return effects, reasons if synced else []


def _source_effects(
    store: Store, before: Source, after: Source, effects: list[tuple[str, str]]
) -> list[str]:
    """Effects of the user id, the query's table or filter, the strategy and the frequency."""
    reasons: list[str] = []
    a, b = before.mapping, after.mapping
    if a.user_id != b.user_id:
        users = store.profile_count(before)
        old, new = user_id_column(before) or a.user_id, user_id_column(after) or b.user_id
        effects.append(
            (
                f"user id column {old} -> {new}",
                "every profile of this source is re-keyed by a full resync (deletes + inserts "
                f"metered: up to {users:,} deletes and one insert per user of the table)",
            )
        )
        reasons.append("the user id column changed")
    elif (a.table, a.where) != (b.table, b.where):
        effects.append(
            (
                "query",
                "its rows are re-read by a resync at the next sync: only real differences are applied and metered",
            )
        )
        reasons.append("the query reads other rows")
    if before.strategy != after.strategy:
        effects.append(_strategy_effect(store, before, after))
        if after.strategy == "cdc":
            reasons.append("the import strategy became cdc")
    if before.frequency_seconds != after.frequency_seconds:
        effects.append(
            (
                f"frequency {format_frequency(before.frequency_seconds)} -> "
                f"{format_frequency(after.frequency_seconds)}",
                "the next scheduled sync follows it (no effect on profiles)",
            )
        )
    return reasons


def _strategy_effect(store: Store, before: Source, after: Source) -> tuple[str, str]:
    subject = f"strategy {before.strategy} -> {after.strategy}"
    if after.strategy == "diff":
        kind = warehouse_class(store.get_connection(before.connection).kind)
        freed = (
            "; the source's replication slot is dropped on the server"
            if kind.holds_server_resources
            else ""
        )
        return (
            subject,
            "every sync reads the whole table and applies only real differences; profiles "
            f"stay as they are now (no operations){freed}",
        )
    return (
        subject,
        "the next sync is a resync that records the change-stream position (only real "
        "differences metered); later syncs read only the changes",
    )


def _release_after_diff(store: Store, plan: EditPlan) -> str | None:
    """A switch to diff frees what CDC held in the warehouse (a Postgres slot)."""
    before = plan.before
    if not (before.strategy == "cdc" and plan.after.strategy == "diff"):
        return None
    connection = store.get_connection(before.connection)
    if not warehouse_class(connection.kind).holds_server_resources:
        return None
    warehouse = open_warehouse(connection, before.name)
    try:
        warehouse.release(before.mapping)
    except ProfilesyncError as exc:
        return f"the change data capture resources could not be freed ({exc}); free them by hand"
    finally:
        warehouse.close()
    return None


def _summary(source: Source) -> dict[str, Any]:
    return {
        "table": None if source.mapping.table == QUERY_TABLE else source.mapping.table,
        "query": source.mapping.query,
        "user_id": user_id_column(source) or source.mapping.user_id,
        "properties": [
            {"name": p.name, "column": p.column, "expression": p.expression}
            for p in source.mapping.properties
        ],
        "strategy": source.strategy,
        "frequency": format_frequency(source.frequency_seconds),
    }
