"""The store's part for who may do what: users, their API tokens and the audit log.

The catalog tables are ``users``, ``api_tokens`` and ``audit_log`` (schema version 5).
"""

from __future__ import annotations

from typing import Protocol


class Access(Protocol):
    """Users, API tokens and the audit log (implemented for every backend by the catalog)."""
