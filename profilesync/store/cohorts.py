"""The store's part for saved cohorts: a name and a definition, kept as JSON.

The catalog table is ``cohorts`` (schema version 6). The store keeps definitions as
given; what they mean (and their validation) is :mod:`profilesync.query.analyses`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol


@dataclass(frozen=True)
class Cohort:
    """A saved cohort: its name and definition (JSON), created and last changed."""

    name: str
    definition: dict[str, Any]
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        def moment(at: datetime | None) -> str | None:
            return at.astimezone(UTC).isoformat() if at else None

        return {
            "name": self.name,
            "definition": self.definition,
            "created_at": moment(self.created_at),
            "updated_at": moment(self.updated_at),
        }


class Cohorts(Protocol):
    """Saved cohorts (implemented for every backend by the catalog)."""

    def add_cohort(self, name: str, definition: dict[str, Any]) -> Cohort:
        """Save a new cohort; a name in use is refused (ConfigurationError)."""
        ...

    def get_cohort(self, name: str) -> Cohort:
        """The cohort of that name (NotFoundError naming the known ones)."""
        ...

    def list_cohorts(self) -> list[Cohort]: ...
    def update_cohort(self, name: str, definition: dict[str, Any]) -> Cohort: ...
    def delete_cohort(self, name: str) -> None: ...
