"""Current profiles: one typed table per source, changed by a sync in one transaction.

Each source's current rows live in their own table ``profiles_<source id>`` keyed by
``user_id`` without an index: a sync deletes the changed users through a hash join and
appends their new rows, which keeps a sync's cost close to the size of its changes (an
ART index makes large deletes slow in DuckDB; updates in place rewrite whole row groups
at checkpoint). Everything a sync changes commits in one transaction: the rows, the
checkpoint, the run and its rejected rows, the usage.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import duckdb
import pyarrow as pa

from profilesync.errors import NeedsResyncError, NotFoundError
from profilesync.faults import fault
from profilesync.mapping import quote
from profilesync.model import Checkpoint, Mapping, Source, SyncResult, json_value, now
from profilesync.store.duckdb.catalog import CatalogTables
from profilesync.store.protocol import DELETED, NetChanges, PropertyStats, QuotaPolicy

_OWN_COLUMNS = ("user_id", "_synced_at")


class ProfileTables(CatalogTables):
    """The profiles part of the store protocol."""

    def apply(
        self,
        source: Source,
        changes: NetChanges,
        checkpoint: Checkpoint,
        result: SyncResult,
        *,
        full: bool,
        quota: QuotaPolicy,
    ) -> SyncResult:
        """Apply ``changes``; with ``full``, users absent from them are deleted (a snapshot diff).

        Only rows that differ from the store are written and metered. The store, the
        checkpoint, the run and the usage commit together; any error rolls all back.
        """
        self.con.register("net_arrow", changes.net)
        self.con.register("rejected_arrow", changes.rejected)
        try:
            with self.transaction() as con:
                self._ensure_profile_table(con, source.profile_table, full)
                self._plan(con, source.profile_table, changes.net.schema, full)
                self._count(con, result)
                quota.check(self._used_this_month(con), result.operations)
                fault("apply")
                self._write(con, source.profile_table, changes.net.schema)
                self._record(con, source, checkpoint, result, changes.rejected_count)
                fault("before_commit")
        finally:  # outside the transaction: after a rollback it would fail and hide the cause
            self.con.execute("DROP TABLE IF EXISTS _plan")
            self.con.unregister("net_arrow")
            self.con.unregister("rejected_arrow")
        return result

    @staticmethod
    def _count(con: duckdb.DuckDBPyConnection, result: SyncResult) -> None:
        counts = con.execute(
            f"SELECT count_if(NOT {DELETED} AND NOT _exists), count_if(NOT {DELETED} AND _exists AND NOT _same), "
            f"count_if({DELETED} AND _exists), count_if(NOT {DELETED} AND _same) FROM _plan"
        ).fetchone()
        assert counts is not None
        # count_if over an empty plan is NULL, not 0
        result.inserted, result.updated, result.deleted, result.unchanged = (
            int(c or 0) for c in counts
        )

    @staticmethod
    def _write(con: duckdb.DuckDBPyConnection, table: str, schema: pa.Schema) -> None:
        """Delete the changed users' rows, then append their new ones."""
        props = ", ".join(quote(f.name) for f in schema if f.name not in ("user_id", DELETED))
        # by the row ids the plan's join found: no second scan of the user_id column
        con.execute(
            f"DELETE FROM {table} WHERE rowid IN (SELECT _rowid FROM _plan "
            f"WHERE _exists AND ({DELETED} OR NOT _same))"
        )
        fault("mid_apply")
        con.execute(
            f"INSERT INTO {table} (user_id{', ' + props if props else ''}, _synced_at) "
            f"SELECT user_id{', ' + props if props else ''}, ? FROM _plan WHERE NOT {DELETED} AND NOT _same",
            [now()],
        )

    def _record(
        self,
        con: duckdb.DuckDBPyConnection,
        source: Source,
        checkpoint: Checkpoint,
        result: SyncResult,
        rejected: int,
    ) -> None:
        """The checkpoint, the run with its rejected rows, and the usage of this sync."""
        con.execute(
            "UPDATE sources SET checkpoint = ? WHERE id = ?",
            [json.dumps(checkpoint.to_json()), source.id],
        )
        result.status, result.checkpoint, result.finished_at = "success", checkpoint.position, now()
        result.rejected = rejected
        self._insert_run(con, source.id, result)
        con.execute(
            'INSERT INTO rejected_rows SELECT ?, ?, reason, "row" FROM rejected_arrow',
            [result.run_id, source.name],
        )
        con.execute(
            "INSERT INTO usage VALUES (?, ?, ?)",
            [result.finished_at.date(), source.name, result.operations],
        )

    def _ensure_profile_table(self, con: duckdb.DuckDBPyConnection, table: str, full: bool) -> None:
        """Create the source's table and follow the mapping's columns and types.

        A type change converts the stored values when every one of them converts; else a
        full snapshot re-fills the column, and a change stream asks for a resync.
        """
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {table} (user_id VARCHAR NOT NULL, _synced_at TIMESTAMPTZ)"
        )
        existing = _types(con, table)
        wanted = _types(con, "SELECT * FROM net_arrow")
        for name in set(existing) - set(wanted) - set(_OWN_COLUMNS):
            con.execute(f"ALTER TABLE {table} DROP COLUMN {quote(name)}")  # no longer mapped
        for name, dtype in wanted.items():
            if name in ("user_id", DELETED) or existing.get(name) == dtype:
                continue
            if name in existing and self._converts(con, table, name, dtype):
                con.execute(f"ALTER TABLE {table} ALTER {quote(name)} TYPE {dtype}")
                continue
            if name in existing and not full:
                raise NeedsResyncError(
                    f"property {name!r} changed type from {existing[name]} to {dtype} in the "
                    "warehouse and the values already stored cannot be converted. Nothing was "
                    "applied. Run the sync with --resync to re-read the table as it is now."
                )
            if name in existing:
                con.execute(f"ALTER TABLE {table} DROP COLUMN {quote(name)}")
            con.execute(f"ALTER TABLE {table} ADD COLUMN {quote(name)} {dtype}")

    @staticmethod
    def _converts(con: duckdb.DuckDBPyConnection, table: str, name: str, dtype: str) -> bool:
        row = con.execute(
            f"SELECT count(*) FROM {table} WHERE {quote(name)} IS NOT NULL "
            f"AND TRY_CAST({quote(name)} AS {dtype}) IS NULL"
        ).fetchone()
        return row is not None and row[0] == 0

    @staticmethod
    def _plan(con: duckdb.DuckDBPyConnection, table: str, schema: pa.Schema, full: bool) -> None:
        """Classify each net change against the store: new user, real update, no-op, delete."""
        props = [quote(f.name) for f in schema if f.name not in ("user_id", DELETED)]
        net = "net_arrow"
        if full:  # users the snapshot no longer has are deletes
            net = f"""(SELECT * FROM net_arrow UNION ALL BY NAME
                       SELECT s.user_id, true AS {DELETED} FROM {table} s
                       ANTI JOIN net_arrow a ON s.user_id = a.user_id)"""
        same = " AND ".join(f"n.{p} IS NOT DISTINCT FROM p.{p}" for p in props) or "true"
        con.execute(f"""CREATE TEMP TABLE _plan AS SELECT n.*, p.rowid AS _rowid,
                        p.user_id IS NOT NULL AS _exists,
                        (p.user_id IS NOT NULL AND {same}) AS _same
                        FROM {net} n LEFT JOIN {table} p ON n.user_id = p.user_id""")

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
            (source, _types(self.con, source.profile_table, skip=_OWN_COLUMNS))
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
        present = {s.id: cols for s, cols in self.profile_tables()}
        with self.transaction() as con:
            updated = self.update_source(source.name, mapping=mapping)
            if name in present.get(source.id, []):
                con.execute(f"ALTER TABLE {source.profile_table} DROP COLUMN {quote(name)}")
        return updated

    def get_profile(self, user_id: str, *, detail: bool = False) -> dict[str, Any]:
        """``{"user_id", "properties"}``; with ``detail`` also each property's source and sync time."""
        properties: dict[str, Any] = {}
        details: dict[str, dict[str, Any]] = {}
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


def _types(
    con: duckdb.DuckDBPyConnection, relation: str, skip: tuple[str, ...] = ()
) -> dict[str, str]:
    """Column name -> SQL type of a table or query, in column order."""
    rows = con.execute(f"DESCRIBE {relation}").fetchall()
    return {str(r[0]): str(r[1]) for r in rows if str(r[0]) not in skip}
