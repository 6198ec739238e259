"""Errors grouped by what the user has to do about them.

Every message names the cause and the fix; the CLI prints ``error: <message>`` and the
API returns it as JSON. ``retriable`` tells a scheduler whether trying again may help.

An error speaks the surface it appears on: besides its message (the cause and the
command that fixes it, as the CLI prints it) it carries ``cli_fix``, the command, and
``ui_fix``, the button or step that fixes it in the web UI (:class:`UiFix`). The web UI
shows :attr:`ProfilesyncError.ui_message` (the message without command-line advice: the
CLI refuses to run next to ``serve``) and the UI fix. A failed run keeps only its message
and code, so :func:`ui_view` rebuilds the same view from those two.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class UiFix:
    """What a person does about an error in the web UI: a button or a step.

    ``href`` links to where it is done (``/sources/users#resync``); None for a step
    that happens elsewhere (in the warehouse). ``{source}`` in ``href`` is filled in by
    :meth:`for_source` (a link that needs a source name and has none is dropped).
    """

    label: str
    href: str | None = None

    def for_source(self, source: str | None) -> UiFix:
        if self.href is None or "{source}" not in self.href:
            return self
        if not source:
            return UiFix(self.label)
        return UiFix(self.label, self.href.replace("{source}", source))

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "href": self.href}


#: where a source's mapping is changed (``{source}`` is filled in where the source is known)
EDIT_SOURCE = "/sources/{source}/edit"


class ProfilesyncError(Exception):
    """Root of every error profilesync raises on purpose.

    ``cli_fix``: the command that fixes it (already named in the message); ``ui_fix``:
    the button or step of the web UI (a string is a step without a link);
    ``ui_message``: the cause as the web UI says it, when stripping the command-line
    advice from the message (:func:`without_cli_advice`) would not read well.
    A class may set defaults: ``default_cli_fix`` / ``default_ui_fix``, where
    ``{source}`` stands for the source's name.
    """

    retriable = False
    #: machine-readable kind, used by the API and stored with failed runs
    code = "error"
    default_cli_fix: str | None = None
    default_ui_fix: UiFix | None = None

    def __init__(
        self,
        message: str = "",
        *,
        cli_fix: str | None = None,
        ui_fix: UiFix | str | None = None,
        ui_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.cli_fix = cli_fix
        self.ui_fix = UiFix(ui_fix) if isinstance(ui_fix, str) else ui_fix
        self._ui_message = ui_message

    @property
    def ui_message(self) -> str:
        """The cause, without advice for the command line."""
        return self._ui_message or without_cli_advice(str(self))

    @ui_message.setter
    def ui_message(self, text: str) -> None:
        self._ui_message = text

    def fixes(self, source: str | None = None) -> dict[str, Any]:
        """``{"cli": command or None, "ui": {"label", "href"} or None}`` for the API."""
        cli = self.cli_fix or _fill(self.default_cli_fix, source)
        ui = self.ui_fix_for(source)
        return {"cli": cli, "ui": ui.to_json() if ui else None}

    def ui_fix_for(self, source: str | None = None) -> UiFix | None:
        fix = self.ui_fix or self.default_ui_fix
        return fix.for_source(source) if fix else None


def resync_fixes(source: str) -> dict[str, Any]:
    """The fixes of an error a resync of ``source`` recovers from, as keyword arguments."""
    return {
        "cli_fix": f"profilesync sync {source} --resync",
        "ui_fix": UiFix("Resync", f"/sources/{source}#resync"),
    }


def _fill(template: str | None, source: str | None) -> str | None:
    if template is None or "{source}" not in template:
        return template
    return template.replace("{source}", source) if source else None


class ConfigurationError(ProfilesyncError):
    """The connection, source or mapping is wrong; the user must change it."""

    code = "configuration"


class NotFoundError(ConfigurationError):
    """A named connection, source, table or profile does not exist."""

    code = "not_found"


class ConnectionSettingsError(ConfigurationError):
    """A saved connection no longer reaches its warehouse as set (its directory moved, its
    mount is gone): a person changes the connection's settings."""

    code = "connection_settings"
    default_ui_fix = UiFix("Edit the connection's settings", "/sources/{source}/connection/edit")


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
    default_cli_fix = "profilesync sync {source} --resync"
    default_ui_fix = UiFix(
        "Turn change tracking on in the warehouse (the SQL above), then Resync",
        "/sources/{source}#resync",
    )


class NeedsResyncError(ProfilesyncError):
    """The checkpoint can no longer be continued: the table was replaced or its history expired.

    Nothing was applied. ``profilesync sync NAME --resync`` diffs the current snapshot
    against the store and applies only the real differences.
    """

    code = "needs_resync"
    default_cli_fix = "profilesync sync {source} --resync"
    default_ui_fix = UiFix("Resync", "/sources/{source}#resync")


class TableReplacedError(NeedsResyncError):
    code = "table_replaced"


class RetentionExceededError(NeedsResyncError):
    code = "retention_exceeded"


class QuotaExceededError(ProfilesyncError):
    """The sync would pass the plan's monthly operation limit; nothing was applied."""

    code = "quota_exceeded"
    default_cli_fix = "profilesync config set plan enterprise"
    default_ui_fix = UiFix(
        "See this month's usage: syncs go on next month, or once the plan is raised", "/usage"
    )


class ConcurrentSyncError(ProfilesyncError):
    """Another sync of the same source is running."""

    code = "sync_running"
    default_ui_fix = UiFix("Wait for the running sync to finish, then try again")
    retriable = True


class StoreBusyError(ProfilesyncError):
    """The store file is held by another process for longer than we waited."""

    code = "store_busy"
    default_ui_fix = UiFix("Try again in a moment")
    retriable = True


class WarehouseUnavailableError(ProfilesyncError):
    """The warehouse did not answer; trying again later may work."""

    code = "warehouse_unavailable"
    default_cli_fix = "profilesync sync {source}"
    default_ui_fix = UiFix(
        "Check that the warehouse is up, then Sync now", "/sources/{source}#sync"
    )
    retriable = True


class WarehouseDataError(ProfilesyncError):
    """The table's own files are broken (a damaged log, deleted data files, no permission).

    Not retriable: trying again reads the same broken files. The message says what to
    repair; ``--resync`` helps only when the damage is limited to old change history.
    """

    code = "warehouse_damaged"
    default_ui_fix = UiFix(
        "Repair the table's files in the warehouse, then Sync now", "/sources/{source}#sync"
    )


class InternalError(ProfilesyncError):
    """Something failed that profilesync did not expect: a bug. Nothing was applied."""

    code = "internal"
    default_ui_fix = UiFix("Report it with the server's log; nothing was applied")


class StoreFullError(ProfilesyncError):
    """The disk holding the home is full. Nothing was applied; retrying after space is freed works."""

    code = "store_full"
    default_ui_fix = UiFix(
        "Free disk space where the home is, then Sync now", "/sources/{source}#sync"
    )
    retriable = True


class SyncMemoryError(ProfilesyncError):
    """A sync needed more working memory than its ``sync_memory_limit`` allows, even
    spilling to disk (DuckDB's operators need some memory of their own). Nothing was
    applied; a higher limit works."""

    code = "out_of_memory"
    default_cli_fix = "profilesync config set sync_memory_limit 1GB"
    default_ui_fix = UiFix("Ask whoever runs the server to raise sync_memory_limit, then Sync now")


class StoreCorruptedError(ProfilesyncError):
    """The store file cannot be read as a DuckDB database: restore it or start a new one."""

    code = "store_corrupted"


class HomeNotWritableError(ConfigurationError):
    """The home (or a file in it) cannot be written by this user."""

    code = "home_not_writable"
    default_ui_fix = UiFix("Ask whoever runs the server to make its home writable again")


#: command-line advice inside a message: a ``profilesync ...`` command or a ``--flag``
_CLI = re.compile(
    r"`profilesync [^`]*`|\bprofilesync (?:sync|source|connection|events|config|serve|query)\b"
    r"|(?<![\w-])--[a-z][\w-]*|(?<![\w-])-o [a-z]"
)
#: where a clause starts inside a sentence: the advice is cut from the first one holding it
_CLAUSE = re.compile(r": |; |, and |, then |, or | \(| — | - (?=[a-z])")
_SENTENCE = re.compile(r"(?<!e\.g\.)(?<!i\.e\.)(?<=[.!?])\s+(?=[A-Z(`])")


def has_cli_advice(text: str) -> bool:
    return _CLI.search(text) is not None


def without_cli_advice(text: str) -> str:
    """``text`` without its sentences or clauses of command-line advice.

    "... CDC needs incremental models; run `profilesync sync users --resync` to diff ..."
    -> "... CDC needs incremental models." A sentence that is advice from its start is
    left out; a text that is nothing but advice is returned unchanged (better a command
    than nothing).
    """
    kept = [s for s in (_clean(s) for s in _SENTENCE.split(text.strip())) if s]
    return " ".join(kept) if kept else text


def _clean(sentence: str) -> str:
    match = _CLI.search(sentence)
    if match is None:
        return sentence
    starts = [m.start() for m in _CLAUSE.finditer(sentence, 0, match.start())]
    if not starts:
        return ""
    head = sentence[: starts[-1]].rstrip(" :;,")
    if head.count("(") > head.count(")"):  # cut inside a parenthesis: drop what it opened
        head = head[: head.rindex("(")].rstrip(" :;,")
    return head + "." if head else ""


def error_class(code: str | None) -> type[ProfilesyncError]:
    """The class of an error by its code (as stored with a failed run)."""
    found: type[ProfilesyncError] = ProfilesyncError
    pending: list[type[ProfilesyncError]] = [ProfilesyncError]
    while pending:
        cls = pending.pop()
        if cls.code == code:
            found = cls
        pending.extend(cls.__subclasses__())
    return found


def ui_view(
    error: ProfilesyncError | str, code: str | None = None, source: str | None = None
) -> dict[str, Any]:
    """What the web UI shows of an error, raised or stored with a run or a stopped source:
    ``{"code", "message"`` (the cause, no command-line advice)``, "fix"`` (a :class:`UiFix`
    or None)``}``."""
    if isinstance(error, ProfilesyncError):
        return {"code": error.code, "message": error.ui_message, "fix": error.ui_fix_for(source)}
    default = error_class(code).default_ui_fix
    fix = default.for_source(source) if default else None
    return {"code": code, "message": without_cli_advice(error), "fix": fix}


#: error codes after which only a person can make the next run succeed: the scheduler
#: stops a source on them and alerts say it is stopped
NEEDS_PERSON = frozenset(
    {
        "needs_resync",
        "table_replaced",
        "retention_exceeded",
        "quota_exceeded",
        "change_tracking",
        "warehouse_damaged",
        "store_corrupted",
    }
)
