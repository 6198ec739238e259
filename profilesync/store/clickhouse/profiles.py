"""Current profiles read from ClickHouse: schemas, counts, lookups, exports, property
statistics and removal, all through each source's view of its committed rows."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa

from profilesync.engine.resync import mark_resync
from profilesync.errors import NotFoundError
from profilesync.faults import fault
from profilesync.model import Mapping, Source, json_value
from profilesync.store.clickhouse.apply import Applier
from profilesync.store.clickhouse.driver import naive_times, quote_name
from profilesync.store.protocol import PropertyStats

#: why the next sync is a resync after stored columns were renamed or dropped in ClickHouse
RENAMED = "stored columns were renamed or dropped in ClickHouse: the resync checks them"
#: the DuckDB type of properties that keep their time zone when read
_ZONED = "TIMESTAMP WITH TIME ZONE"


class ProfileRows(Applier):
    """The profiles part of the store protocol."""

    def profile_schemas(self) -> list[tuple[Source, dict[str, str]]]:
        """Sources that have synced, with the SQL type of each property column they hold."""
        present = self.tables()
        sources = [s for s in self.list_sources() if s.profile_table in present]
        columns = self.columns([s.profile_table for s in sources])
        return [(s, columns[s.profile_table]) for s in sources]

    def profile_tables(self) -> list[tuple[Source, list[str]]]:
        return [(source, list(types)) for source, types in self.profile_schemas()]

    def profile_count(self, source: Source) -> int:
        """Users with a current row from ``source`` (0 before its first sync)."""
        if self.view_name(source) not in self.tables():
            return 0
        return int(self.scalar(f"SELECT count() FROM {self.view_name(source)}") or 0)

    def property_stats(self, source: Source) -> dict[str, PropertyStats]:
        """Each stored property of ``source``: its type, users with a value, last change."""
        types = next((t for s, t in self.profile_schemas() if s.id == source.id), {})
        if not types:
            return {}
        parts = ", ".join(
            f"count({quote_name(c)}), max(if({quote_name(c)} IS NULL, NULL, _synced_at))"
            for c in types
        )
        row = self.driver.query_arrow(f"SELECT {parts} FROM {self.view_name(source)}")
        values = [column[0].as_py() for column in row.columns]
        return {
            c: PropertyStats(t, int(values[2 * i] or 0), values[2 * i + 1])
            for i, (c, t) in enumerate(types.items())
        }

    def drop_property(self, source: Source, name: str, mapping: Mapping) -> Source:
        """Save ``mapping`` (``source``'s without ``name``), then drop ``name``'s stored
        values (a crash between leaves an unmapped column that the next sync drops)."""
        present = {s.id: cols for s, cols in self.profile_tables()}
        updated = self.update_source(source.name, mapping=mapping)
        if name in present.get(source.id, []):
            self.run(self.layout.alter(source.profile_table, f"DROP COLUMN {quote_name(name)}"))
            self.refresh_view(source)
        return updated

    def rename_property(self, source: Source, old: str, new: str, mapping: Mapping) -> Source:
        """Rename the stored column, then save ``mapping`` (``source``'s with ``old`` shown as
        ``new``): no row is rewritten. See :meth:`edit_source` for a crash between."""
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
        """Drop and rename the stored columns in ClickHouse, then save the mapping, the other
        changes and the resync mark in one catalog transaction.

        ClickHouse has no transaction around its DDL, so when a stored column changes a
        resync mark is committed first: a crash after the ClickHouse change leaves the old
        mapping and that mark, and the next sync, a resync, puts the columns back as the
        mapping says and re-fills them from the warehouse. After a clean save that resync
        finds nothing to change and meters nothing.
        """
        self.check_property_names(source.name, mapping)  # refused before anything changes
        stored = next((cols for s, cols in self.profile_tables() if s.id == source.id), [])
        actions = [f"DROP COLUMN {quote_name(n)}" for n in drops if n in stored] + [
            f"RENAME COLUMN {quote_name(old)} TO {quote_name(new)}"
            for old, new in renames
            if old in stored
        ]
        reasons = list(resync) + ([RENAMED] if actions else [])
        if actions:
            mark_resync(self, source, reasons)  # committed before ClickHouse changes anything
            for action in actions:
                self.run(self.layout.alter(source.profile_table, action))
            self.refresh_view(source)
        fault("edit_mid")
        with self.transaction():
            updated = self.update_source(source.name, mapping=mapping, **changes)
            if reasons and not actions:
                mark_resync(self, source, reasons)
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
        for source, types in self.profile_schemas():
            rows = self.driver.query_arrow(
                f"SELECT * FROM {self.view_name(source)} WHERE user_id = {{u:String}} LIMIT 1",
                {"u": user_id},
            )
            if not rows.num_rows:
                continue
            found = True
            values = _python(rows, types)[0]
            rows_from[source.name] = [n for n in source.mapping.property_names if n in types]
            for col in types:
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
        schemas = self.profile_schemas()
        if not schemas:
            return
        views = [self.view_name(s) for s, _ in schemas]
        ids = " UNION DISTINCT ".join(f"SELECT user_id FROM {v}" for v in views)
        cols = ", ".join(
            f"t{i}.{quote_name(c)} AS {quote_name(c)}"
            for i, (_, types) in enumerate(schemas)
            for c in types
        )
        joins = " ".join(
            f"LEFT JOIN {v} t{i} ON t{i}.user_id = u.user_id" for i, v in enumerate(views)
        )
        types = {c: t for _, ts in schemas for c, t in ts.items()}
        reader = self.driver.connect()
        try:
            stream = reader.stream_arrow(
                f"SELECT u.user_id AS user_id{', ' + cols if cols else ''} FROM ({ids}) u {joins} "
                "ORDER BY u.user_id SETTINGS join_use_nulls = 1",
                rows=batch_size,
            )
            for batch in stream:
                for row in _python(pa.Table.from_batches([batch]), types):
                    uid = row.pop("user_id")
                    yield {
                        "user_id": uid,
                        "properties": {
                            k: value for k, v in row.items() if (value := json_value(v)) is not None
                        },
                    }
        finally:
            reader.close()


def _python(table: pa.Table, types: dict[str, str]) -> list[dict[str, Any]]:
    """Rows as Python values, timestamps as the DuckDB store hands them back: UTC
    wall-clock, zoned for ``TIMESTAMP WITH TIME ZONE`` and the sync time."""
    keep = frozenset(n for n, t in types.items() if t == _ZONED) | {"_synced_at"}
    return list(naive_times(table, keep).to_pylist())
