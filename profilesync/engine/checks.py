"""What "Test mapping" checks: the mapping resolved against the warehouse, the source's
checks (CDC refused where the kind has none), and a dry sample through the transform."""

from __future__ import annotations

import json
from typing import Any

import pyarrow.compute as pc

from profilesync.engine.transform import transform
from profilesync.errors import ConfigurationError, NotFoundError
from profilesync.mapping import from_columns, from_query
from profilesync.model import Mapping, Source, json_value
from profilesync.store.protocol import DELETED, Catalog
from profilesync.warehouses import open_warehouse
from profilesync.warehouses.protocol import Check, Warehouse


def source_checks(warehouse: Warehouse, source: Source) -> list[Check]:
    """What Test mapping checks in the warehouse, with CDC refused where the kind has none."""
    if source.strategy == "cdc" and not warehouse.supports_cdc:
        return [
            Check(
                "strategy",
                "fail",
                f"{warehouse.kind} tables cannot be read by change data capture: use the diff "
                "strategy (`--strategy diff`: each sync reads the whole result and applies only "
                "real differences)",
            )
        ]
    return warehouse.check(source.mapping, source.frequency_seconds, source.strategy)


def failures(checks: list[Check]) -> list[str]:
    """Each failed check as one line, with the SQL that fixes it."""
    return [
        f"{c.name}: {c.message}" + (f" (run: {c.fix_sql})" if c.fix_sql else "")
        for c in checks
        if c.level == "fail"
    ]


def resolve_mapping(
    warehouse: Warehouse,
    *,
    table: str | None,
    query: str | None,
    user_id: str | None,
    properties: list[tuple[str, str]],
    strategy: str = "cdc",
) -> Mapping:
    """Build the mapping from either form and check its table and columns exist.

    Under ``diff`` a query the CDC form refuses (joins, CTEs, unions) runs in the
    warehouse as written, where the source kind can run SQL (``supports_query``).
    """
    if bool(table) == bool(query):
        raise ConfigurationError(
            "give either --table (with --user-id) or --query, not both or neither"
        )
    if query:
        try:
            mapping = from_query(query, warehouse.dialect)
        except ConfigurationError:
            if strategy != "diff" or not getattr(warehouse, "supports_query", False):
                raise
            return from_query(query, warehouse.dialect, pushdown=True)
    else:
        if not user_id:
            raise ConfigurationError(
                "--table needs --user-id COLUMN (the column holding the user id)"
            )
        assert table is not None
        mapping = from_columns(table, user_id, properties)
    schema = warehouse.table_schema(mapping.table)
    missing = [c for c in mapping.columns if c not in schema.names]
    if missing:
        raise NotFoundError(
            f"table {mapping.table} has no column(s) {', '.join(missing)} (it has: {', '.join(schema.names)})"
        )
    return mapping


def test_mapping(
    store: Catalog, source: Source, preview_rows: int = 10, sample_limit: int | None = 100_000
) -> dict[str, Any]:
    """The dry check of "Test mapping": nothing is written to the store."""
    connection = store.get_connection(source.connection)
    warehouse = open_warehouse(connection, source.name)
    try:
        checks: list[Check] = []
        try:
            store.check_property_names(source.name, source.mapping)
            checks.append(Check("property names", "pass", "unique across sources"))
        except ConfigurationError as exc:
            checks.append(Check("property names", "fail", str(exc)))
        checks.extend(source_checks(warehouse, source))
        sample = transform(
            warehouse.snapshot(source.mapping, limit=sample_limit).reader, source.mapping
        )
    finally:
        warehouse.close()
    preview = (
        sample.net.filter(pc.invert(sample.net.column(DELETED)))
        .drop_columns([DELETED])
        .slice(0, preview_rows)
    )
    ok = all(c.level != "fail" for c in checks)
    return {
        "source": source.name,
        "ok": ok,
        "checks": [c.to_json() for c in checks],
        "sampled_rows": sample.read,
        "preview": [{k: json_value(v) for k, v in row.items()} for row in preview.to_pylist()],
        "rejected": sample.rejected_count,
        "rejected_rows": [
            {"reason": r["reason"], "row": json.loads(r["row"])}
            for r in sample.rejected.slice(0, 50).to_pylist()
        ],
    }
