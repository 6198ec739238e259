"""The routes whose POST (PUT, PATCH, DELETE) is no ordinary change: queries and tests,
which change nothing, and your own account's password and tokens.

One registry, read by the role check (``deps.role_needed``: the least role each needs) and
by the audit trail (``audit``: what only reads is not recorded). A route missing here is
an ordinary change: an editor's, and recorded.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NotAChange:
    """A state-changing method (POST, PUT, PATCH, DELETE) on a route that is no ordinary
    change: ``role``, the least role that may call it; ``reads``, whether it changes
    nothing (else it changes only the caller's own account); ``why``, in words."""

    why: str
    role: str = "viewer"
    reads: bool = True


_QUERY = NotAChange("a query: reads events, changes nothing")
_OWN_TOKENS = NotAChange("your own API tokens, which act with your role", reads=False)
_REVOKE = NotAChange("revoking one of your own API tokens", reads=False)
#: the one registry of those routes, by (method, route template): the role check lets a
#: viewer call the ones for viewers, and the audit log leaves out the ones that only read
NOT_CHANGES: dict[tuple[str, str], NotAChange] = {
    ("POST", "/api/query/segmentation"): _QUERY,
    ("POST", "/api/query/funnel"): _QUERY,
    ("POST", "/api/query/retention"): _QUERY,
    ("POST", "/api/sources/{name}/test"): NotAChange(
        "Test mapping of a saved source: reads the warehouse only"
    ),
    ("POST", "/api/sources/test"): NotAChange(
        "Test mapping of an unsaved source: runs the query it is given with a saved "
        "connection's credentials, so it needs the role that may add sources",
        role="editor",
    ),
    ("POST", "/api/connections/{name}/test"): NotAChange(
        "a connection test: reads the warehouse only", role="editor"
    ),
    ("POST", "/connections/{name}/test"): NotAChange(
        "a connection test: reads the warehouse only", role="editor"
    ),
    ("POST", "/api/tokens"): _OWN_TOKENS,
    ("DELETE", "/api/tokens/{token_id}"): _REVOKE,
    ("POST", "/account/password"): NotAChange("your own password", reads=False),
    ("POST", "/account/tokens"): _OWN_TOKENS,
    ("POST", "/account/tokens/{token_id}/revoke"): _REVOKE,
}


def only_reads(method: str, template: str) -> bool:
    """Whether ``method`` on route ``template`` changes nothing (a query, a test)."""
    found = NOT_CHANGES.get((method, template))
    return found is not None and found.reads
