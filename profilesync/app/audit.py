"""The audit log: who changed what, when, and through which surface (ui, api or cli).

Entries are written by the shells in one place each (the server after every successful
change, the CLI after every changing command), never by each use case: a new route or
command is recorded the day it is added. An entry names the fields a change touched,
never their values, so a secret never reaches the log.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from profilesync.app.home import Store
from profilesync.errors import ConfigurationError
from profilesync.store.access import AuditEntry

VIA = ("ui", "api", "cli")
MAX_LIMIT = 1000
#: CLI commands (by their last word, or a whole group) that change nothing
CLI_READS = frozenset(
    {"list", "kinds", "tables", "get", "known", "export", "test", "show", "runs", "usage"}
    | {"serve", "demo", "audit", "query"}
)
#: CLI command path -> (action, target kind), where the words do not say it already
CLI_ACTIONS = {
    ("sync",): ("source.sync", "source"),
    ("config", "set"): ("settings.update", "settings"),
    ("events", "import"): ("events.import", "project"),
    ("events", "projects", "add"): ("project.create", "project"),
    ("events", "projects", "rotate-key"): ("project.rotate_key", "project"),
    ("events", "projects", "delete"): ("project.delete", "project"),
    ("user", "add"): ("user.create", "user"),
    ("token", "create"): ("token.create", "token"),
}
_VERBS = {"add": "create", "rm": "delete", "remove": "delete"}


def record(
    store: Store,
    actor: str,
    via: str,
    action: str,
    target_kind: str,
    target: str | None = None,
    fields: Iterable[str] = (),
) -> AuditEntry:
    """Note one change; ``fields`` are the names of what it set (values are never kept)."""
    detail: dict[str, Any] = {"fields": sorted(set(fields))} if fields else {}
    return store.add_audit(actor, via, action, target_kind, target, detail)


def entries(
    store: Store, limit: int = 100, target: str | None = None, target_kind: str | None = None
) -> list[AuditEntry]:
    """Newest first; ``target`` narrows to one source, connection, user, ... by name."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ConfigurationError(f"limit {limit}: give a number from 1 to {MAX_LIMIT}")
    return store.audit_entries(limit, target or None, target_kind or None)


def cli_action(words: tuple[str, ...]) -> tuple[str, str] | None:
    """The action and target kind of a CLI command path (``("source", "delete")``), or
    None for a command that changes nothing."""
    if not words or words[0] in CLI_READS or words[-1] in CLI_READS:
        return None
    if words in CLI_ACTIONS:
        return CLI_ACTIONS[words]
    kind = words[0] if len(words) > 1 else "home"
    verb = _VERBS.get(words[-1], words[-1]).replace("-", "_")
    return f"{kind}.{verb}", kind
