"""The relations a compiled query reads, by logical name, and where they live.

Queries are compiled against logical relations: ``events``, ``event_catalog``,
``projects`` and one ``profiles.<source name>`` per synced source. :func:`physical` swaps
them for the store's tables just before a query runs, so the compiler never sees how a
backend lays out its tables; a store that names them differently changes
:func:`table_names` and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlglot import exp

from profilesync.errors import NotFoundError
from profilesync.model import Source

EVENTS = "events"
EVENT_CATALOG = "event_catalog"
PROJECTS = "projects"
#: the schema of the logical profile relations: ``profiles.<source name>``
PROFILES = "profiles"
#: profile table columns that are bookkeeping, not properties
BOOKKEEPING = ("user_id", "_synced_at")

#: (schema, name) of a logical relation -> the physical table
Tables = Mapping[tuple[str, str], str]


class Reader(Protocol):
    """What running a compiled query needs from a store: its dialect and ``read``."""

    @property
    def dialect(self) -> str: ...
    def read(self, query: exp.Expression, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...


class QueryStore(Reader, Protocol):
    """A store that holds profiles: its sources' tables are joined to events."""

    def profile_tables(self) -> list[tuple[Source, list[str]]]: ...
    def get_profile(self, user_id: str, *, detail: bool = False) -> dict[str, Any]: ...


def relation(name: str, alias: str | None = None) -> exp.Table:
    """A logical relation (``events``, ``event_catalog``, ``projects``) in a FROM or JOIN."""
    return exp.table_(name, alias=alias)


def profile_relation(source: str, alias: str | None = None) -> exp.Table:
    """The logical relation of one source's current profile rows."""
    return exp.table_(source, db=PROFILES, alias=alias)


def table_names(sources: list[Source]) -> dict[tuple[str, str], str]:
    """Logical relation -> physical table in the embedded store's layout."""
    tables = {("", name): name for name in (EVENTS, EVENT_CATALOG, PROJECTS)}
    tables.update({(PROFILES, s.name): s.profile_table for s in sources})
    return tables


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

    def property(self, name: str) -> ProfileProperty:
        if name not in self.properties:
            known = ", ".join(sorted(self.properties)) or "none yet (sync a source first)"
            raise NotFoundError(f"no profile property named {name!r}; known: {known}")
        return self.properties[name]


def load_catalog(store: QueryStore) -> Catalog:
    """Profile properties of every synced source with their stored types (one read of
    ``information_schema``, which DuckDB and ClickHouse both offer)."""
    sources = [source for source, _ in store.profile_tables()]
    tables = table_names(sources)
    if not sources:
        return Catalog({}, tables)
    physical_names = [exp.Literal.string(s.profile_table) for s in sources]
    columns = exp.column
    query = (
        exp.select("table_name", "column_name", "data_type")
        .from_(exp.table_("columns", db="information_schema"))
        .where(columns("table_schema").eq(exp.CurrentSchema()))
        .where(columns("table_name").isin(*physical_names))
        .order_by("ordinal_position")
    )
    by_table: dict[str, list[tuple[str, str]]] = {}
    for table, name, type_name in store.read(query):
        by_table.setdefault(table, []).append((name, type_name))
    properties: dict[str, ProfileProperty] = {}
    for source in sources:  # a later source wins a name, as profiles merge them
        for name, type_name in by_table.get(source.profile_table, []):
            if name not in BOOKKEEPING:
                data_type = _data_type(type_name, store.dialect)
                properties[name] = ProfileProperty(name, source.name, data_type, type_name)
    return Catalog(properties, tables)


def _data_type(name: str, dialect: str) -> exp.DataType:
    """The store's type name as a sqlglot type; one sqlglot cannot parse is kept verbatim
    (it comes from the store's own catalog, never from a user)."""
    try:
        return exp.DataType.build(name, dialect=dialect)
    except Exception:
        return exp.DataType.build(name, dialect=dialect, udt=True)
