"""What the API and the pages both do: thin calls into the library, shaped for display.

Every function takes the store and expects the caller to hold the store lock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import sqlglot
from sqlglot import exp

from profilesync.errors import ConfigurationError, NotFoundError
from profilesync.mapping import QUERY_TABLE, quote
from profilesync.model import Connection, Mapping, Source, check_name, format_frequency
from profilesync.secrets import public_config, secret_fields
from profilesync.sources import open_source, opened, source_class, validate_config
from profilesync.sources.base import Check, WarehouseSource
from profilesync.store.duckdb import DuckDBStore, json_value
from profilesync.sync import engine

#: the frequencies the UI offers, shortest first
FREQUENCIES = ("15m", "30m", "1h", "3h", "6h", "12h", "1d", "7d")


# -- connections ------------------------------------------------------------------------


def connection_doc(connection: Connection, sources: list[Source] | None = None) -> dict[str, Any]:
    """A connection as it may be shown: secrets left out, only which ones are set."""
    hidden = secret_fields(connection.kind, connection.config)
    doc: dict[str, Any] = {
        "name": connection.name,
        "kind": connection.kind,
        "config": public_config(connection.kind, connection.config),
        "secrets_set": sorted(k for k in hidden if connection.config.get(k) not in (None, "")),
    }
    if sources is not None:
        doc["sources"] = [s.name for s in sources if s.connection == connection.name]
    return doc


def clean_config(config: dict[str, Any]) -> dict[str, Any]:
    """Drop empty form values; keys as the CLI writes them."""
    return {
        k.strip().replace("-", "_"): v
        for k, v in config.items()
        if k.strip() and v is not None and (not isinstance(v, str) or v.strip() != "")
    }


def add_connection(store: DuckDBStore, name: str, kind: str, config: dict[str, Any]) -> Connection:
    name = check_name(name, "connection")
    connection = Connection(name, kind, validate_config(kind, clean_config(config)))
    store.add_connection(connection)
    return store.get_connection(name)


def update_connection(store: DuckDBStore, name: str, config: dict[str, Any]) -> Connection:
    """Change settings; a secret left out (or blank) keeps its stored value."""
    old = store.get_connection(name)
    new = clean_config(config)
    for key in secret_fields(old.kind, old.config):
        if key not in new and key in old.config:
            new[key] = old.config[key]
    store.update_connection(Connection(name, old.kind, validate_config(old.kind, new)))
    return store.get_connection(name)


def list_tables(store: DuckDBStore, name: str) -> list[str]:
    with opened(store.get_connection(name)) as warehouse:
        return warehouse.list_tables()


def table_columns(store: DuckDBStore, name: str, table: str) -> list[dict[str, str]]:
    with opened(store.get_connection(name)) as warehouse:
        schema = warehouse.table_schema(table)
    return [{"name": f.name, "type": str(f.type)} for f in schema]


# -- sources ----------------------------------------------------------------------------


@dataclass
class SourceSpec:
    """A source as a form or a JSON body describes it, before it is resolved and saved."""

    connection: str
    name: str = ""
    table: str | None = None
    query: str | None = None
    user_id: str | None = None
    properties: list[tuple[str, str]] = field(default_factory=list)
    strategy: str = "cdc"
    frequency_seconds: int = 12 * 3600


def resolve(store: DuckDBStore, spec: SourceSpec) -> tuple[Source, WarehouseSource]:
    """The unsaved source of ``spec`` and its open warehouse (close it when done)."""
    if spec.strategy not in ("cdc", "diff"):
        raise ConfigurationError(f"import strategy {spec.strategy!r}: choose cdc or diff")
    warehouse = open_source(store.get_connection(spec.connection), spec.name)
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


def test_spec(store: DuckDBStore, spec: SourceSpec) -> dict[str, Any]:
    """Test mapping of an unsaved source (nothing is written)."""
    source, warehouse = resolve(store, spec)
    warehouse.close()
    return engine.test_mapping(store, source)


def create_source(store: DuckDBStore, spec: SourceSpec, *, force: bool = False) -> Source:
    """Save a source after Test mapping's checks, as `source add` does; refused on failures."""
    spec.name = check_name(spec.name, "source")
    source, warehouse = resolve(store, spec)
    try:
        store.check_property_names(source.name, source.mapping)
        checks = [] if force else engine.source_checks(warehouse, source)
    finally:
        warehouse.close()
    if failed := engine.failures(checks):
        raise ConfigurationError(
            "Test mapping failed, the source was not saved: " + "; ".join(failed)
        )
    return store.add_source(source)


def source_doc(store: DuckDBStore, scheduler: Any, source: Source) -> dict[str, Any]:
    """A source with its last run, next run and scheduling state."""
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
        "created_at": json_value(source.created_at),
        "last_run": runs[0] if runs else None,
        **scheduler.status(source),
    }


def check_frequency(store: DuckDBStore, source: Source, seconds: int) -> None:
    """Refuse a frequency the warehouse's change retention cannot cover."""
    problems = frequency_problems(store, source, [seconds]).get(seconds)
    if problems:
        raise ConfigurationError(
            f"frequency {format_frequency(seconds)} is longer than the table's change retention: "
            + "; ".join(c.message for c in problems)
        )


def frequency_problems(
    store: DuckDBStore, source: Source, choices: list[int]
) -> dict[int, list[Check]]:
    """For each frequency, the failing checks it adds over the shortest one (retention).

    Longest first: once one passes, every shorter one passes too.
    """
    warehouse = open_source(store.get_connection(source.connection), source.name)
    try:

        def failing(seconds: int) -> dict[str, Check]:
            checks = warehouse.check(source.mapping, seconds, source.strategy)
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


def delete_source(store: DuckDBStore, scheduler: Any, name: str) -> None:
    """Free warehouse resources (a Postgres slot), then drop the source and its properties."""
    source = store.get_source(name)
    warehouse = open_source(store.get_connection(source.connection), name)
    try:
        warehouse.release(source.mapping)
    finally:
        warehouse.close()
    store.delete_source(name)
    scheduler.forget(name)


def delete_explanation(store: DuckDBStore, source: Source) -> list[str]:
    """What deleting ``source`` does, in the words the delete page shows."""
    users = _count_users(store, source)
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


def _count_users(store: DuckDBStore, source: Source) -> int:
    if not any(s.id == source.id for s, _ in store.profile_tables()):
        return 0
    row = store.con.execute(f"SELECT count(*) FROM {source.profile_table}").fetchone()
    return int(row[0]) if row else 0


# -- usage ----------------------------------------------------------------------------------


def usage(store: DuckDBStore) -> dict[str, Any]:
    """This month's usage (``store.usage()``) plus operations per day and source."""
    doc = store.usage()
    start = date.fromisoformat(f"{doc['month']}-01")
    rows = store.con.execute(
        "SELECT day, source, sum(operations) FROM usage WHERE day >= ? "
        "GROUP BY day, source ORDER BY day, source",
        [start],
    ).fetchall()
    doc["days_by_source"] = [
        {"day": r[0].isoformat(), "source": r[1], "operations": int(r[2])} for r in rows
    ]
    return doc


# -- properties ---------------------------------------------------------------------------


def properties(store: DuckDBStore) -> list[dict[str, Any]]:
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
    store: DuckDBStore, source: Source, columns: list[str]
) -> dict[str, tuple[str, int, Any]]:
    if not columns:
        return {}
    table = source.profile_table
    types = {str(r[0]): str(r[1]) for r in store.con.execute(f"DESCRIBE {table}").fetchall()}
    parts = ", ".join(
        f"count({quote(c)}), max(CASE WHEN {quote(c)} IS NOT NULL THEN _synced_at END)"
        for c in columns
    )
    row = store.con.execute(f"SELECT {parts} FROM {table}").fetchone() or ()
    return {c: (types[c], int(row[2 * i]), row[2 * i + 1]) for i, c in enumerate(columns)}


def remove_property(store: DuckDBStore, name: str) -> Source:
    """Take ``name`` out of its source's mapping and drop it from the store now."""
    for source in store.list_sources():
        if name in source.mapping.property_names:
            break
    else:
        raise NotFoundError(f"no property named {name!r}: see the Properties page")
    dialect = source_class(store.get_connection(source.connection).kind).dialect
    mapping = without_property(source.mapping, name, dialect)
    present = {s.id: cols for s, cols in store.profile_tables()}
    with store.transaction() as con:
        updated = store.update_source(source.name, mapping=mapping)
        if name in present.get(source.id, []):
            con.execute(f"ALTER TABLE {source.profile_table} DROP COLUMN {quote(name)}")
    return updated


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
