"""The relations a compiled query reads, by logical name, and where they live.

Queries are compiled against logical relations: ``events`` and one
``profiles.<source name>`` per synced source. :func:`physical` swaps them for the
store's own names (:attr:`Store.events_relation`, :meth:`Store.profile_relation`) just
before a query runs, so the compiler never sees how a backend lays out its tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp

from profilesync.errors import NotFoundError
from profilesync.store.protocol import Reader, Store

__all__ = ["Reader", "Store"]

EVENTS = "events"
#: the schema of the logical profile relations: ``profiles.<source name>``
PROFILES = "profiles"

#: (schema, name) of a logical relation -> the physical table
Tables = Mapping[tuple[str, str], str]


def relation(name: str, alias: str | None = None) -> exp.Table:
    """A logical relation (``events``) in a FROM or JOIN."""
    return exp.table_(name, alias=alias)


def profile_relation(source: str, alias: str | None = None) -> exp.Table:
    """The logical relation of one source's current profile rows."""
    return exp.table_(source, db=PROFILES, alias=alias)


def physical(expression: exp.Expression, tables: Tables) -> exp.Expression:
    """A copy of ``expression`` reading the physical tables (aliases kept); names that are
    not logical relations (CTEs, ``information_schema``) are left alone."""

    def swap(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Table) and (name := tables.get((node.db, node.name))):
            return exp.Table(this=exp.to_identifier(name), alias=node.args.get("alias"))
        return node

    return expression.transform(swap)


@dataclass(frozen=True)
class ProfileProperty:
    """A profile property: the source whose relation holds it and its type in the store."""

    name: str
    source: str
    type: exp.DataType
    type_name: str  # as the store names it, for the pickers


@dataclass
class Catalog:
    """The profile properties a query can name, and the physical tables of every relation."""

    properties: dict[str, ProfileProperty]
    tables: dict[tuple[str, str], str] = field(default_factory=dict)
    #: saved cohorts by name: their definitions as stored (JSON)
    cohorts: dict[str, dict[str, Any]] = field(default_factory=dict)

    def property(self, name: str) -> ProfileProperty:
        if name not in self.properties:
            known = ", ".join(sorted(self.properties)) or "none yet (sync a source first)"
            raise NotFoundError(f"no profile property named {name!r}; known: {known}")
        return self.properties[name]


def load_catalog(store: Store) -> Catalog:
    """Profile properties of every synced source with their stored types."""
    tables = {("", EVENTS): store.events_relation}
    properties: dict[str, ProfileProperty] = {}
    for source, types in store.profile_schemas():  # a later source wins a name, as profiles do
        tables[(PROFILES, source.name)] = store.profile_relation(source)
        for name, type_name in types.items():
            data_type = _data_type(type_name, store.dialect)
            properties[name] = ProfileProperty(name, source.name, data_type, type_name)
    cohorts = {c.name: c.definition for c in store.list_cohorts()}
    return Catalog(properties, tables, cohorts)


def _data_type(name: str, dialect: str) -> exp.DataType:
    """The store's type name as a sqlglot type; one sqlglot cannot parse is kept verbatim
    (it comes from the store's own catalog, never from a user)."""
    try:
        return exp.DataType.build(name, dialect=dialect)
    except Exception:
        return exp.DataType.build(name, dialect=dialect, udt=True)
