"""Users, API tokens and the audit log in the catalog file (see profilesync.store.access)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from profilesync.errors import NotFoundError, UiFix
from profilesync.model import now
from profilesync.store.access import ApiToken, AuditEntry, User
from profilesync.store.duckdb.connected import Connected

_USER = (
    "SELECT name, role, created_at, invited_by, password_hash IS NOT NULL, "
    "invite_expires_at, disabled_at FROM users"
)
_TOKEN = "SELECT id, user_name, label, hint, created_at, last_used_at, revoked_at FROM api_tokens"
_AUDIT = 'SELECT id, "at", actor, via, action, target_kind, target, detail FROM audit_log'


class AccessTables(Connected):
    """The :class:`~profilesync.store.access.Access` part of the catalog."""

    # -- users -------------------------------------------------------------------------
    def add_user(
        self,
        name: str,
        role: str,
        *,
        password_hash: str | None = None,
        invite_hash: str | None = None,
        invite_expires_at: datetime | None = None,
        invited_by: str | None = None,
    ) -> User:
        self.con.execute(
            "INSERT INTO users VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
            [name, role, password_hash, invite_hash, invite_expires_at, invited_by, now()],
        )
        return self._user(name)

    def find_user(self, name: str) -> User | None:
        row = self.con.execute(f"{_USER} WHERE name = ?", [name]).fetchone()
        return User(*row) if row else None

    def _user(self, name: str) -> User:
        found = self.find_user(name)
        if found is None:
            raise NotFoundError(
                f"no user named {name!r}: see `profilesync user list`",
                ui_fix=UiFix("See the Members page", "/members"),
            )
        return found

    def list_users(self) -> list[User]:
        return [User(*r) for r in self.con.execute(f"{_USER} ORDER BY name").fetchall()]

    def user_password_hash(self, name: str) -> str | None:
        row = self.con.execute("SELECT password_hash FROM users WHERE name = ?", [name]).fetchone()
        return row[0] if row else None

    def find_invited_user(self, invite_hash: str) -> User | None:
        row = self.con.execute(f"{_USER} WHERE invite_hash = ?", [invite_hash]).fetchone()
        return User(*row) if row else None

    def set_user_password(self, name: str, password_hash: str) -> None:
        self._set_user(
            name,
            "password_hash = ?, invite_hash = NULL, invite_expires_at = NULL",
            [password_hash],
        )

    def set_user_invite(self, name: str, invite_hash: str, expires_at: datetime) -> None:
        self._set_user(name, "invite_hash = ?, invite_expires_at = ?", [invite_hash, expires_at])

    def set_user_role(self, name: str, role: str) -> None:
        self._set_user(name, "role = ?", [role])

    def set_user_disabled(self, name: str, disabled: bool) -> None:
        self._set_user(name, "disabled_at = ?", [now() if disabled else None])

    def _set_user(self, name: str, assignments: str, params: list[Any]) -> None:
        self._user(name)
        self.con.execute(f"UPDATE users SET {assignments} WHERE name = ?", [*params, name])

    # -- API tokens --------------------------------------------------------------------
    def add_api_token(self, user_name: str, label: str, token_hash: str, hint: str) -> ApiToken:
        with self.transaction() as con:
            row = con.execute(
                "INSERT INTO api_tokens SELECT coalesce(max(id), 0) + 1, ?, ?, ?, ?, ?, NULL, "
                "NULL FROM api_tokens RETURNING id",
                [user_name, label, token_hash, hint, now()],
            ).fetchone()
        assert row is not None
        token = self.get_api_token(int(row[0]))
        assert token is not None
        return token

    def list_api_tokens(self, user_name: str | None = None) -> list[ApiToken]:
        where = "revoked_at IS NULL" + (" AND user_name = ?" if user_name else "")
        rows = self.con.execute(
            f"{_TOKEN} WHERE {where} ORDER BY id DESC", [user_name] if user_name else []
        ).fetchall()
        return [ApiToken(*r) for r in rows]

    def get_api_token(self, token_id: int) -> ApiToken | None:
        row = self.con.execute(f"{_TOKEN} WHERE id = ?", [token_id]).fetchone()
        return ApiToken(*row) if row else None

    def find_api_token(self, token_hash: str) -> ApiToken | None:
        row = self.con.execute(
            f"{_TOKEN} WHERE token_hash = ? AND revoked_at IS NULL", [token_hash]
        ).fetchone()
        return ApiToken(*row) if row else None

    def touch_api_token(self, token_id: int, at: datetime) -> None:
        self.con.execute("UPDATE api_tokens SET last_used_at = ? WHERE id = ?", [at, token_id])

    def revoke_api_token(self, token_id: int) -> None:
        self.con.execute(
            "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            [now(), token_id],
        )

    # -- audit log ---------------------------------------------------------------------
    def add_audit(
        self,
        actor: str,
        via: str,
        action: str,
        target_kind: str,
        target: str | None,
        detail: dict[str, Any],
    ) -> AuditEntry:
        with self.transaction() as con:
            row = con.execute(
                "INSERT INTO audit_log SELECT coalesce(max(id), 0) + 1, ?, ?, ?, ?, ?, ?, ? "
                "FROM audit_log RETURNING id",
                [now(), actor, via, action, target_kind, target, json.dumps(detail)],
            ).fetchone()
        assert row is not None
        return self.audit_entries(1, entry_id=int(row[0]))[0]

    def audit_entries(
        self,
        limit: int = 100,
        target: str | None = None,
        target_kind: str | None = None,
        *,
        entry_id: int | None = None,
    ) -> list[AuditEntry]:
        clauses, params = [], []
        for column, value in (("target", target), ("target_kind", target_kind), ("id", entry_id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self.con.execute(
            f"{_AUDIT}{where} ORDER BY id DESC LIMIT ?", [*params, limit]
        ).fetchall()
        return [_audit_entry(r) for r in rows]


def _audit_entry(row: tuple[Any, ...]) -> AuditEntry:
    id_, at, actor, via, action, kind, target, detail = row
    return AuditEntry(
        id_, at, actor, via, action, kind, target, json.loads(detail) if detail else {}
    )
