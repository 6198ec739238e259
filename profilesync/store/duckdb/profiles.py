"""Current profiles: one typed table per source (``profiles_<source id>``, keyed by
``user_id`` without an index), changed by a sync in one transaction (see :mod:`.apply`),
read by lookups, exports and the property pages."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from profilesync.engine.resync import mark_resync
from profilesync.errors import NotFoundError
from profilesync.faults import fault
from profilesync.mapping import quote
from profilesync.model import Mapping, Source, json_value
from profilesync.store.duckdb.apply import OWN_COLUMNS as _OWN_COLUMNS
from profilesync.store.duckdb.apply import Applier, types
from profilesync.store.protocol import PropertyStats


class ProfileTables(Applier):
    """The profiles part of the store protocol."""

    # -- reading ---------------------------------------------------------------------
    def profile_schemas(self) -> list[tuple[Source, dict[str, str]]]:
        """Sources that have synced, with the SQL type of each property column they hold."""
        present = {
            r[0]
            for r in self.con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'"
            ).fetchall()
        }
        return [
            (source, types(self.con, source.profile_table, skip=_OWN_COLUMNS))
            for source in self.list_sources()
            if source.profile_table in present
        ]

    def profile_tables(self) -> list[tuple[Source, list[str]]]:
        """Sources that have synced, with the property columns their table holds."""
        return [(source, list(types)) for source, types in self.profile_schemas()]

    def profile_count(self, source: Source) -> int:
        """Users with a current row from ``source`` (0 before its first sync)."""
        if not any(s.id == source.id for s, _ in self.profile_tables()):
            return 0
        row = self.con.execute(f"SELECT count(*) FROM {source.profile_table}").fetchone()
        return int(row[0]) if row else 0

    def property_stats(self, source: Source) -> dict[str, PropertyStats]:
        """Each stored property of ``source``: its type, users with a value, last change."""
        types = next((t for s, t in self.profile_schemas() if s.id == source.id), {})
        if not types:
            return {}
        parts = ", ".join(
            f"count({quote(c)}), max(CASE WHEN {quote(c)} IS NOT NULL THEN _synced_at END)"
            for c in types
        )
        row = self.con.execute(f"SELECT {parts} FROM {source.profile_table}").fetchone() or ()
        return {
            c: PropertyStats(t, int(row[2 * i]), row[2 * i + 1])
            for i, (c, t) in enumerate(types.items())
        }

    def drop_property(self, source: Source, name: str, mapping: Mapping) -> Source:
        """Save ``mapping`` (``source``'s without ``name``) and drop ``name``'s stored values,
        together."""
        return self.edit_source(source, mapping, drops=[name])

    def rename_property(self, source: Source, old: str, new: str, mapping: Mapping) -> Source:
        """Save ``mapping`` (``source``'s with ``old`` shown as ``new``) and rename the stored
        column, together: no row is rewritten."""
        return self.edit_source(source, mapping, renames=[(old, new)])

    def edit_source(
        self,
        source: Source,
        mapping: Mapping,
        *,
        drops: Sequence[str] = (),
        renames: Sequence[tuple[str, str]] = (),
        resync: Sequence[str] = (),
        **changes: Any,
    ) -> Source:
        """Drop and rename stored columns, save the mapping, the other changes and the resync
        mark in one transaction (DuckDB's DDL is transactional): all of it or nothing."""
        stored = next((cols for s, cols in self.profile_tables() if s.id == source.id), [])
        table = source.profile_table
        with self.transaction() as con:
            for name in (n for n in drops if n in stored):
                con.execute(f"ALTER TABLE {table} DROP COLUMN {quote(name)}")
            for old, new in ((o, n) for o, n in renames if o in stored):
                con.execute(f"ALTER TABLE {table} RENAME COLUMN {quote(old)} TO {quote(new)}")
            fault("edit_mid")
            updated = self.update_source(source.name, mapping=mapping, **changes)
            if resync:
                mark_resync(self, source, list(resync))
            fault("edit_before_commit")
        return updated

    def get_profile(self, user_id: str, *, detail: bool = False) -> dict[str, Any]:
        """``{"user_id", "properties"}``; with ``detail`` also each property's source and sync
        time, and ``sources``: each source with a row for the user -> the properties it maps
        now and has synced (what that row can give)."""
        properties: dict[str, Any] = {}
        details: dict[str, dict[str, Any]] = {}
        rows_from: dict[str, list[str]] = {}  # source -> what it maps now and holds values of
        found = False
        for source, cols in self.profile_tables():
            cur = self.con.execute(
                f"SELECT * FROM {source.profile_table} WHERE user_id = ?", [user_id]
            )
            names = [d[0] for d in cur.description]
            row = cur.fetchone()
            if row is None:
                continue
            found = True
            values = dict(zip(names, row, strict=True))
            rows_from[source.name] = [n for n in source.mapping.property_names if n in cols]
            for col in cols:
                if (value := json_value(values[col])) is not None:  # NaN is no value either
                    properties[col] = value
                    details[col] = {
                        "source": source.name,
                        "synced_at": json_value(values["_synced_at"]),
                    }
        if not found:
            raise NotFoundError(
                f"no profile for user_id {user_id!r}: no source has a current row for it"
            )
        profile: dict[str, Any] = {"user_id": user_id, "properties": properties}
        if detail:
            profile["details"] = details
            profile["sources"] = rows_from
        return profile

    def export_profiles(self, batch_size: int = 10_000) -> Iterator[dict[str, Any]]:
        """Every profile, ordered by ``user_id``, in the ``profile get`` shape."""
        tables = self.profile_tables()
        if not tables:
            return
        ids = " UNION ".join(f"SELECT user_id FROM {s.profile_table}" for s, _ in tables)
        cols = ", ".join(f"t{i}.{quote(c)}" for i, (_, cs) in enumerate(tables) for c in cs)
        joins = " ".join(
            f"LEFT JOIN {s.profile_table} t{i} ON t{i}.user_id = u.user_id"
            for i, (s, _) in enumerate(tables)
        )
        cur = self.con.cursor()
        reader = cur.execute(
            f"SELECT u.user_id{', ' + cols if cols else ''} FROM ({ids}) u {joins} ORDER BY u.user_id"
        ).to_arrow_reader(batch_size)
        for batch in reader:
            for row in batch.to_pylist():
                uid = row.pop("user_id")
                yield {
                    "user_id": uid,
                    "properties": {
                        k: value for k, v in row.items() if (value := json_value(v)) is not None
                    },
                }
