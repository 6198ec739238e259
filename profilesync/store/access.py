"""The store's part for who may do what: users, their API tokens and the audit log.

The catalog tables are ``users``, ``api_tokens`` and ``audit_log`` (schema version 5).
Only hashes of passwords, invitation codes and tokens are stored; the rules (roles, the
last admin, expiry) live in :mod:`profilesync.app.users`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from profilesync.model import json_value

#: roles from least to most: a viewer reads, an editor changes, an admin also manages users
ROLES = ("viewer", "editor", "admin")


@dataclass(frozen=True)
class User:
    """A person who may log in (once a password is set) and own API tokens."""

    name: str
    role: str
    created_at: datetime
    invited_by: str | None = None
    has_password: bool = False
    invite_expires_at: datetime | None = None
    disabled_at: datetime | None = None

    @property
    def status(self) -> str:
        """``active``, ``invited`` (no password yet) or ``disabled``."""
        if self.disabled_at is not None:
            return "disabled"
        return "active" if self.has_password else "invited"

    def at_least(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "status": self.status,
            "invited_by": self.invited_by,
            "created_at": json_value(self.created_at),
            "invite_expires_at": json_value(self.invite_expires_at)
            if self.status == "invited"
            else None,
            "disabled_at": json_value(self.disabled_at),
        }


@dataclass(frozen=True)
class ApiToken:
    """One API token of a user: only its hash is stored, and a hint to recognise it."""

    id: int
    user_name: str
    label: str
    hint: str
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "user": self.user_name,
            "label": self.label,
            "hint": self.hint,
            "created_at": json_value(self.created_at),
            "last_used_at": json_value(self.last_used_at),
            "revoked_at": json_value(self.revoked_at),
        }


@dataclass(frozen=True)
class AuditEntry:
    """Who changed what, when, and through which surface (``ui``, ``api`` or ``cli``)."""

    id: int
    at: datetime
    actor: str
    via: str
    action: str
    target_kind: str
    target: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": json_value(self.at),
            "actor": self.actor,
            "via": self.via,
            "action": self.action,
            "target_kind": self.target_kind,
            "target": self.target,
            "detail": self.detail,
        }


class Access(Protocol):
    """Users, API tokens and the audit log (implemented for every backend by the catalog)."""

    # -- users -----------------------------------------------------------------------
    def add_user(
        self,
        name: str,
        role: str,
        *,
        password_hash: str | None = None,
        invite_hash: str | None = None,
        invite_expires_at: datetime | None = None,
        invited_by: str | None = None,
    ) -> User: ...

    def find_user(self, name: str) -> User | None:
        """The user named ``name``, or None."""
        ...

    def list_users(self) -> list[User]: ...

    def user_password_hash(self, name: str) -> str | None: ...

    def find_invited_user(self, invite_hash: str) -> User | None: ...

    def set_user_password(self, name: str, password_hash: str) -> None:
        """Set the password and drop any pending invitation."""
        ...

    def set_user_invite(self, name: str, invite_hash: str, expires_at: datetime) -> None: ...

    def set_user_role(self, name: str, role: str) -> None: ...

    def set_user_disabled(self, name: str, disabled: bool) -> None: ...

    # -- API tokens ------------------------------------------------------------------
    def add_api_token(self, user_name: str, label: str, token_hash: str, hint: str) -> ApiToken: ...

    def list_api_tokens(self, user_name: str | None = None) -> list[ApiToken]:
        """Tokens not revoked, of one user or of everyone, newest first."""
        ...

    def get_api_token(self, token_id: int) -> ApiToken | None: ...

    def find_api_token(self, token_hash: str) -> ApiToken | None:
        """The live (not revoked) token with this hash."""
        ...

    def touch_api_token(self, token_id: int, at: datetime) -> None: ...

    def revoke_api_token(self, token_id: int) -> None: ...

    # -- audit log -------------------------------------------------------------------
    def add_audit(
        self,
        actor: str,
        via: str,
        action: str,
        target_kind: str,
        target: str | None,
        detail: dict[str, Any],
    ) -> AuditEntry: ...

    def audit_entries(
        self, limit: int = 100, target: str | None = None, target_kind: str | None = None
    ) -> list[AuditEntry]:
        """Newest first; ``target`` (and ``target_kind``) narrow it to one thing."""
        ...
