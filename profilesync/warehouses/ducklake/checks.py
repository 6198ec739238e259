"""Test mapping for a DuckLake table: one inspection, then pure rules.

DuckLake records the inserts and deletes of every snapshot, so CDC needs no setup; what
can go wrong is a view (no changes recorded) and snapshots expiring before a sync reads
them (``expire_older_than``).
"""

from __future__ import annotations

from dataclasses import dataclass

from profilesync.mapping import QUERY_TABLE
from profilesync.warehouses.duckdb.checks import DuckDBInspection, diff_cost_check, query_check
from profilesync.warehouses.protocol import Check
from profilesync.warehouses.rules import retention_check

EXPIRE_OPTION = "expire_older_than"


@dataclass(frozen=True)
class LakeInspection(DuckDBInspection):
    """What "Test mapping" read of a DuckLake mapping; parts a strategy does not need stay None."""

    is_view: bool = False
    snapshot: int | None = None
    #: the table's uuid at ``snapshot``
    identity: str | None = None
    #: the most specific ``expire_older_than`` (None: not set) and its length in seconds
    expire: str | None = None
    expire_seconds: int | None = None
    oldest_snapshot: int | None = None


def judge(inspection: LakeInspection, frequency_seconds: int, strategy: str) -> list[Check]:
    """The checks of a DuckLake mapping."""
    table = inspection.mapping.table
    if table == QUERY_TABLE:
        return [query_check(inspection.query_error), diff_cost_check("query result", None)]
    if inspection.is_view:
        return [view_check(table, strategy), diff_cost_check("view", None)]
    checks = [
        Check(
            "table",
            "pass",
            f"DuckLake table {table} (uuid {inspection.identity}) at snapshot {inspection.snapshot}",
        )
    ]
    if strategy == "diff":
        return [*checks, diff_cost_check("table", inspection.rows)]
    checks.append(
        Check(
            "change tracking",
            "pass",
            "DuckLake records the inserts and deletes of every snapshot: no setup needed",
        )
    )
    return [*checks, snapshot_retention_check(inspection, frequency_seconds)]


def view_check(table: str, strategy: str) -> Check:
    if strategy == "diff":
        return Check("table", "pass", f"DuckLake view {table}, read whole at one snapshot")
    return Check(
        "change tracking",
        "fail",
        f"{table} is a view: DuckLake records the changes of tables only. Use --strategy diff "
        "(each sync reads the whole view), or point the source at the underlying table.",
    )


def snapshot_retention_check(inspection: LakeInspection, frequency_seconds: int) -> Check:
    value = inspection.expire
    if value is None:
        return Check(
            "snapshot retention",
            "pass",
            f"no {EXPIRE_OPTION} is set: snapshots (oldest kept: {inspection.oldest_snapshot}) "
            "stay until someone runs ducklake_expire_snapshots; expiring snapshots newer than "
            "the last sync forces a resync",
        )
    fix = f"CALL <lake>.set_option('{EXPIRE_OPTION}', '7 days')"
    return retention_check(
        "snapshot retention",
        EXPIRE_OPTION,
        value,
        inspection.expire_seconds,
        frequency_seconds,
        fix,
        "snapshots",
    )
