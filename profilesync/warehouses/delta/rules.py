"""Rules for Delta tables that the ``delta`` source (storage, delta-rs) and the
``databricks`` source (a SQL warehouse) share.

Both read the same table format, so they agree on what the change data feed looks like,
which retention settings bound it, when a table counts as replaced and what the user
is told to do. Each source reads history and metadata its own way and passes plain
values here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from collections.abc import Mapping as Properties
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from profilesync.errors import (
    ChangeTrackingError,
    RetentionExceededError,
    TableReplacedError,
    UiFix,
    WarehouseDataError,
    resync_fixes,
)
from profilesync.model import Checkpoint
from profilesync.warehouses.protocol import DELETE, UPSERT, Check
from profilesync.warehouses.rules import WEEK, expired_error, replaced_error, retention_check

CDF = "delta.enableChangeDataFeed"
LOG_RETENTION = "delta.logRetentionDuration"
FILE_RETENTION = "delta.deletedFileRetentionDuration"
DEFAULT_LOG_RETENTION = "interval 30 days"
DEFAULT_FILE_RETENTION = "interval 1 week"
#: change data feed columns: the kind of change and the version that committed it
CHANGE_TYPE = "_change_type"
COMMIT_VERSION = "_commit_version"
#: operations that replace a table in place (the Delta table id stays the same)
REPLACE_OPS = {
    "CREATE OR REPLACE TABLE",
    "REPLACE TABLE",
    "CREATE OR REPLACE TABLE AS SELECT",
    "REPLACE TABLE AS SELECT",
}
#: ``Checkpoint.extra`` keys that pin the commit at the checkpoint's version: a table
#: restored from a copy, or whose log was rewritten, has another commit at that version
COMMIT_TIMESTAMP = "commit_timestamp"
COMMIT_SHA256 = "commit_sha256"
RETENTION_REMEDY = f"Raise {LOG_RETENTION} / {FILE_RETENTION} above the sync frequency"
_INTERVAL = re.compile(r"^\s*(?:interval\s+)?(\d+)\s+(second|minute|hour|day|week)s?\s*$", re.I)
_UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": WEEK}


def interval_seconds(text: str) -> int | None:
    """Delta's ``interval 7 days`` -> seconds (None when unreadable)."""
    match = _INTERVAL.match(text)
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()] if match else None


def cdf_on(properties: Properties[str, Any]) -> bool:
    """Whether table properties switch the change data feed on."""
    return str(properties.get(CDF, "false")).strip().lower() == "true"


def path_sql(path: str) -> str:
    """A Delta table named by its directory, as Spark and Databricks SQL write it."""
    return "delta.`" + path.replace("`", "``") + "`"


def python_enable_cdf(path: str) -> str:
    """The Python (deltalake) line that switches the change data feed on for ``path``."""
    return (
        f"from deltalake import DeltaTable; "
        f"DeltaTable({path!r}).alter.set_table_properties({{{CDF!r}: 'true'}})"
    )


def cdf_missing(table: str, path: str | None = None) -> Check:
    """The "Test mapping" line for a table without the change data feed; ``path``: the table
    is a directory (local Delta), so the fix names it by path, where it works."""
    sql_name = path_sql(path) if path else table
    how = (
        f"Enable it with the SQL below (Spark or Databricks), or in Python: `{python_enable_cdf(path)}`"
        if path
        else "Enable it"
    )
    return Check(
        "change data feed",
        "fail",
        f"{CDF} is not enabled on {table}: changes cannot be read incrementally. "
        f"{how} (or choose --strategy diff to re-read the table every sync).",
        f"ALTER TABLE {sql_name} SET TBLPROPERTIES ({CDF} = true)",
    )


def cdf_off_error(table: str, source_name: str, path: str | None = None) -> ChangeTrackingError:
    return ChangeTrackingError(
        f"{CDF} is off on {table}: run `{cdf_missing(table, path).fix_sql}`, then "
        f"`profilesync sync {source_name} --resync`",
        cli_fix=f"profilesync sync {source_name} --resync",
        ui_fix=UiFix("Turn the change data feed on, then Resync", f"/sources/{source_name}#resync"),
    )


def retention_checks(
    table: str, properties: Properties[str, Any], frequency_seconds: int
) -> list[Check]:
    """``delta.logRetentionDuration`` / ``delta.deletedFileRetentionDuration`` against the
    frequency: refused when shorter, a warning under 7 days. ``table`` as fix SQL names it."""
    return [
        _retention_check(table, key, str(properties.get(key, default)), frequency_seconds)
        for key, default in (
            (LOG_RETENTION, DEFAULT_LOG_RETENTION),
            (FILE_RETENTION, DEFAULT_FILE_RETENTION),
        )
    ]


def _retention_check(table: str, key: str, value: str, frequency_seconds: int) -> Check:
    fix = f"ALTER TABLE {table} SET TBLPROPERTIES ({key} = 'interval 7 days')"
    return retention_check(key, key, value, interval_seconds(value), frequency_seconds, fix)


@dataclass(frozen=True)
class FeedInspection:
    """What "Test mapping" needs to know of a Delta table, read once by either source."""

    #: the table as the user names it (in messages, and in fix SQL unless ``path`` is set)
    table: str
    #: the "table" check's message: which table, at which version
    found: str
    properties: dict[str, Any]
    #: the version since which the change data feed is on (None: off, or not read)
    cdf_since: int | None
    #: the table's directory when it has no name outside profilesync (local Delta): fix
    #: SQL names it ``delta.`<path>```, which Spark and Databricks accept
    path: str | None = None


def judge_feed(inspection: FeedInspection, frequency_seconds: int) -> list[Check]:
    """The CDC checks of a Delta table: the feed is on, and kept long enough."""
    if not cdf_on(inspection.properties):
        return [cdf_missing(inspection.table, inspection.path)]
    since = inspection.cdf_since
    feed = Check("change data feed", "pass", f"{CDF} = true since version {since}")
    sql_name = path_sql(inspection.path) if inspection.path else inspection.table
    return [feed, *retention_checks(sql_name, inspection.properties, frequency_seconds)]


def check_identity(
    table: str, checkpoint: Checkpoint, identity: str, version: int, source_name: str
) -> None:
    """Refuse a table whose Delta id changed or whose version went back since the checkpoint."""
    if identity != checkpoint.identity:
        why = f"Delta table id changed from {checkpoint.identity} to {identity}"
        raise replaced_error(table, why, source_name)
    if version < int(checkpoint.position):
        # same id, older version: a copy of the table's files was put back, or the log
        # was truncated; either way the store holds changes the table no longer has
        raise history_changed(
            table, f"its version went back from {checkpoint.position} to {version}", source_name
        )


def check_same_commit(
    table: str, checkpoint: Checkpoint, now: Properties[str, Any], source_name: str
) -> None:
    """Refuse when the commit at the checkpoint's version is not the one the store synced.

    Delta versions are only numbers: a table restored from a file copy (same id, an
    older version) that then takes new commits reaches the checkpoint's version again
    with other contents, and reading the feed after it would silently skip the rows
    the copy lost. ``now`` holds the same marks (:data:`COMMIT_SHA256`,
    :data:`COMMIT_TIMESTAMP`) read from the table today; marks a side lacks (old
    checkpoints, a log entry already cleaned up) are not compared.
    """
    for key, what in ((COMMIT_SHA256, "contents"), (COMMIT_TIMESTAMP, "commit time")):
        then, current = checkpoint.extra.get(key), now.get(key)
        if then is not None and current is not None and str(then) != str(current):
            version = checkpoint.position
            why = f"its commit at version {version} has another {what} than the synced one"
            raise history_changed(table, why, source_name)


def history_changed(table: str, why: str, source_name: str) -> TableReplacedError:
    """The checkpoint's version no longer names the same table state."""
    return TableReplacedError(
        f"the history of {table} changed since the last sync ({why}): it was restored from a "
        "copy or older files, its log was rewritten, or it was dropped and re-created. Nothing "
        f"was applied. Run `profilesync sync {source_name} --resync` to diff the table as it is "
        "now against the store.",
        **resync_fixes(source_name),
    )


def damaged(table: str, what: str, fix: str) -> WarehouseDataError:
    """The table's own files are broken: no sync, full or incremental, can read it."""
    return WarehouseDataError(
        f"Delta table {table} cannot be read: {what}. Nothing was applied. {fix}, then sync again."
    )


def check_not_replaced(
    table: str, commits: Iterable[tuple[int, str]], since: int, source_name: str
) -> None:
    """Refuse when a (version, operation) commit after ``since`` replaced the table in place."""
    if any(operation in REPLACE_OPS and version > since for version, operation in commits):
        why = "the table was replaced (CREATE OR REPLACE) after the checkpoint"
        raise replaced_error(table, why, source_name)


def check_feed_since(table: str, enabled: int, since: int, source_name: str) -> None:
    """Refuse when the change data feed was switched on after the checkpoint's version."""
    if enabled > since + 1:
        raise RetentionExceededError(
            f"the change data feed of {table} was enabled at version {enabled}, after the "
            f"checkpoint (version {since}): changes in between were never recorded. "
            f"Run `profilesync sync {source_name} --resync` to diff the table against the store.",
            **resync_fixes(source_name),
        )


def expired(table: str, since: str, why: str, source_name: str) -> RetentionExceededError:
    return expired_error(table, since, why, RETENTION_REMEDY, source_name)


def change_ops(change_type: Any, commit_version: Any) -> tuple[Any, Any]:
    """Change data feed kinds and versions -> ``_op`` and ``_ord``: ordered by commit,
    deletes (and update pre-images) before inserts (and post-images) within one commit."""
    kind = pc.cast(change_type, pa.string())
    upsert = pc.is_in(kind, pa.array(["insert", "update_postimage"]))
    version = pc.cast(commit_version, pa.int64())
    order = pc.add(pc.multiply(version, 2), pc.cast(upsert, pa.int64()))
    return pc.if_else(upsert, UPSERT, DELETE), order
