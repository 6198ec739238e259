"""Property use cases: every profile property with its statistics, and removing one."""

from __future__ import annotations

from typing import Any

import sqlglot
from sqlglot import exp

from profilesync.app._warehouses import warehouse_class
from profilesync.app.home import Store, json_value
from profilesync.errors import NotFoundError
from profilesync.mapping import QUERY_TABLE
from profilesync.model import Mapping, Source


def list_properties(store: Store) -> list[dict[str, Any]]:
    """Every property: type, source, users with a value, when a value of it last changed."""
    synced = {s.id: cols for s, cols in store.profile_tables()}
    out = []
    for source in store.list_sources():
        stats = _column_stats(store, source, synced.get(source.id, []))
        for prop in source.mapping.properties:
            type_, users, last = stats.get(prop.name, (None, 0, None))
            out.append(
                {
                    "name": prop.name,
                    "source": source.name,
                    "expression": prop.expression,
                    "column": prop.column,
                    "type": type_,
                    "users": users,
                    "last_changed": json_value(last),
                }
            )
    return sorted(out, key=lambda p: p["name"].lower())


def _column_stats(
    store: Store, source: Source, columns: list[str]
) -> dict[str, tuple[str, int, Any]]:
    stats = store.property_stats(source) if columns else {}
    return {
        c: (stats[c].type, stats[c].users, stats[c].last_changed) for c in columns if c in stats
    }


def removal(store: Store, name: str) -> dict[str, Any]:
    """What removing ``name`` does, in the words the confirmation page shows."""
    found = next((p for p in list_properties(store) if p["name"] == name), None)
    if found is None:
        raise NotFoundError(f"no property named {name!r}: see the Properties page")
    source, read = found["source"], found["column"] or found["expression"]
    return {
        **found,
        "lines": [
            f"{name} leaves the mapping of source {source} (it reads {read}) and is dropped "
            f"from every profile now: {found['users']:,} users have a value.",
            "No operation is metered; later syncs no longer read it. The warehouse table is "
            "not touched.",
            f"To put it back: Edit {source}, add the column {read} as {name}, and save; the "
            "next sync is a resync that back-fills it (an operation for each profile whose "
            "values change).",
        ],
    }


def remove_property(store: Store, name: str) -> Source:
    """Take ``name`` out of its source's mapping and drop it from the store now."""
    for source in store.list_sources():
        if name in source.mapping.property_names:
            break
    else:
        raise NotFoundError(f"no property named {name!r}: see the Properties page")
    dialect = warehouse_class(store.get_connection(source.connection).kind).dialect
    mapping = without_property(source.mapping, name, dialect)
    return store.drop_property(source, name, mapping)


def without_property(mapping: Mapping, name: str, dialect: str) -> Mapping:
    """``mapping`` minus one property; its columns and query text follow."""
    props = tuple(p for p in mapping.properties if p.name != name)
    query = _drop_projection(mapping.query, name, dialect) if mapping.query else None
    if mapping.table == QUERY_TABLE:
        columns = tuple(c for c in mapping.columns if c != name)
    else:
        columns = _read_columns(mapping, props)
    return Mapping(mapping.table, mapping.user_id, props, columns, mapping.where, query)


def _read_columns(mapping: Mapping, props: tuple[Any, ...]) -> tuple[str, ...]:
    """The table columns the remaining expressions read (all of them if one will not parse)."""
    wanted: set[str] = set()
    try:
        for sql in [mapping.user_id, *(p.expression for p in props), mapping.where]:
            if sql:
                wanted |= {
                    c.name for c in sqlglot.parse_one(sql, read="duckdb").find_all(exp.Column)
                }
    except sqlglot.errors.SqlglotError:
        return mapping.columns
    return tuple(c for c in mapping.columns if c in wanted)


def _drop_projection(query: str, name: str, dialect: str) -> str:
    try:
        tree = sqlglot.parse_one(query, read=dialect)
    except sqlglot.errors.SqlglotError:
        return query
    if not isinstance(tree, exp.Select):
        return query
    kept = [p for p in tree.expressions if p.alias_or_name != name]
    if len(kept) == len(tree.expressions):
        return query
    return tree.select(*kept, append=False).sql(dialect=dialect, pretty=True)
