"""Saved cohorts in the catalog file (see profilesync.store.cohorts)."""

from __future__ import annotations

import json
from typing import Any

from profilesync.errors import ConfigurationError, NotFoundError, UiFix
from profilesync.model import now
from profilesync.store.cohorts import Cohort
from profilesync.store.duckdb.connected import Connected

_COLUMNS = "name, definition, created_at, updated_at"


class CohortTables(Connected):
    """The :class:`~profilesync.store.cohorts.Cohorts` part of the catalog."""

    def add_cohort(self, name: str, definition: dict[str, Any]) -> Cohort:
        at = now()
        with self.transaction() as con:
            if self._exists("cohorts", "name", name):
                raise ConfigurationError(
                    f"a cohort named {name!r} exists: pick another name, or update or delete it"
                )
            con.execute(
                "INSERT INTO cohorts VALUES (?, ?, ?, ?)", [name, json.dumps(definition), at, at]
            )
        return self.get_cohort(name)

    def get_cohort(self, name: str) -> Cohort:
        row = self.con.execute(f"SELECT {_COLUMNS} FROM cohorts WHERE name = ?", [name]).fetchone()
        if row is None:
            known = ", ".join(c.name for c in self.list_cohorts()) or "none yet"
            raise NotFoundError(
                f"no cohort named {name!r} (known: {known}): "
                "see `profilesync query cohort list`, or add it with `profilesync query cohort add`",
                ui_fix=UiFix("See the Cohorts page", "/cohorts"),
            )
        return _cohort(row)

    def list_cohorts(self) -> list[Cohort]:
        rows = self.con.execute(f"SELECT {_COLUMNS} FROM cohorts ORDER BY name").fetchall()
        return [_cohort(row) for row in rows]

    def update_cohort(self, name: str, definition: dict[str, Any]) -> Cohort:
        self.get_cohort(name)
        with self.transaction() as con:
            con.execute(
                "UPDATE cohorts SET definition = ?, updated_at = ? WHERE name = ?",
                [json.dumps(definition), now(), name],
            )
        return self.get_cohort(name)

    def delete_cohort(self, name: str) -> None:
        self.get_cohort(name)
        with self.transaction() as con:
            con.execute("DELETE FROM cohorts WHERE name = ?", [name])


def _cohort(row: tuple[Any, ...]) -> Cohort:
    name, definition, created, updated = row
    return Cohort(name, json.loads(definition), created, updated)
