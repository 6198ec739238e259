"""Test mapping for a DuckDB file: one inspection, then pure rules.

A DuckDB file has no change feed, so the checks only say that the table (or the query)
is there and what a snapshot diff of it costs.
"""

from __future__ import annotations

from dataclasses import dataclass

from profilesync.mapping import QUERY_TABLE
from profilesync.model import Mapping
from profilesync.warehouses.protocol import Check


@dataclass(frozen=True)
class DuckDBInspection:
    """What "Test mapping" read: for a query, why it does not run ("" when it runs); for a
    table, its file and row count."""

    mapping: Mapping
    query_error: str = ""
    file_name: str = ""
    rows: int | None = None


def diff_cost_check(what: str, rows: int | None) -> Check:
    """The "Test mapping" line that says what a snapshot diff costs."""
    size = f" ({rows:,} rows now)" if rows is not None else ""
    return Check(
        "strategy",
        "info",
        f"snapshot diff: each sync reads the whole {what}{size} and compares it with the store by "
        "user_id; only rows that really differ are applied and metered as operations, but the "
        "read costs the size of the result, not of the changes",
    )


def query_check(error: str) -> Check:
    if error:
        return Check("query", "fail", f"the query does not run: {error}")
    return Check("query", "pass", "the query runs in the warehouse as written")


def judge(inspection: DuckDBInspection) -> list[Check]:
    """The checks of a DuckDB mapping (every strategy is a diff)."""
    mapping = inspection.mapping
    if mapping.table == QUERY_TABLE:
        return [query_check(inspection.query_error), diff_cost_check("query result", None)]
    return [
        Check("table", "pass", f"DuckDB table {mapping.table} in {inspection.file_name}"),
        diff_cost_check("table", inspection.rows),
    ]
