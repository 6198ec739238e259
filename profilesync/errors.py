"""Errors grouped by what the user has to do about them.

Every message names the cause and the fix; the CLI prints ``error: <message>`` and the
API returns it as JSON. ``retriable`` tells a scheduler whether trying again may help.
"""

from __future__ import annotations


class ProfilesyncError(Exception):
    """Root of every error profilesync raises on purpose."""

    retriable = False
    #: machine-readable kind, used by the API and stored with failed runs
    code = "error"


class ConfigurationError(ProfilesyncError):
    """The connection, source or mapping is wrong; the user must change it."""

    code = "configuration"


class NotFoundError(ConfigurationError):
    """A named connection, source, table or profile does not exist."""

    code = "not_found"


class MissingDependencyError(ConfigurationError):
    """An optional driver is not installed; the message carries the pip line."""

    code = "missing_dependency"

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f'the {package} driver is not installed: run `pip install "profilesync[{extra}]"`'
        )


class ChangeTrackingError(ConfigurationError):
    """Change tracking (Delta change data feed, Snowflake CHANGE_TRACKING, ...) is off."""

    code = "change_tracking"


class NeedsResyncError(ProfilesyncError):
    """The checkpoint can no longer be continued: the table was replaced or its history expired.

    Nothing was applied. ``profilesync sync NAME --resync`` diffs the current snapshot
    against the store and applies only the real differences.
    """

    code = "needs_resync"


class TableReplacedError(NeedsResyncError):
    code = "table_replaced"


class RetentionExceededError(NeedsResyncError):
    code = "retention_exceeded"


class QuotaExceededError(ProfilesyncError):
    """The sync would pass the plan's monthly operation limit; nothing was applied."""

    code = "quota_exceeded"


class ConcurrentSyncError(ProfilesyncError):
    """Another sync of the same source is running."""

    code = "sync_running"
    retriable = True


class StoreBusyError(ProfilesyncError):
    """The store file is held by another process for longer than we waited."""

    code = "store_busy"
    retriable = True


class WarehouseUnavailableError(ProfilesyncError):
    """The warehouse did not answer; trying again later may work."""

    code = "warehouse_unavailable"
    retriable = True


class WarehouseDataError(ProfilesyncError):
    """The table's own files are broken (a damaged log, deleted data files, no permission).

    Not retriable: trying again reads the same broken files. The message says what to
    repair; ``--resync`` helps only when the damage is limited to old change history.
    """

    code = "warehouse_damaged"


class InternalError(ProfilesyncError):
    """Something failed that profilesync did not expect: a bug. Nothing was applied."""

    code = "internal"


class StoreFullError(ProfilesyncError):
    """The disk holding the home is full. Nothing was applied; retrying after space is freed works."""

    code = "store_full"
    retriable = True


class SyncMemoryError(ProfilesyncError):
    """A sync needed more working memory than its ``sync_memory_limit`` allows, even
    spilling to disk (DuckDB's operators need some memory of their own). Nothing was
    applied; a higher limit works."""

    code = "out_of_memory"


class StoreCorruptedError(ProfilesyncError):
    """The store file cannot be read as a DuckDB database: restore it or start a new one."""

    code = "store_corrupted"


class HomeNotWritableError(ConfigurationError):
    """The home (or a file in it) cannot be written by this user."""

    code = "home_not_writable"
