"""A sync's changes applied to a source's ClickHouse table (see the package docstring for
how it commits without a multi-statement transaction).

The stream is staged as it is read into ``_stage`` (a MergeTree on disk: nothing holds the
window in Python). One aggregate gives each user's net change: a user on one kept row
takes it, a user on several kept rows (a snapshot's duplicate keys) is ambiguous and
deleted, a user on deletes only is deleted. ``_plan`` joins that with the current rows
and classifies each change (new user, real update, no-op, delete; with ``full`` the users
the snapshot no longer has are deletes); only the rows that differ are written, to the
source's pending table, and metered.
"""

from __future__ import annotations

import pyarrow as pa

from profilesync.errors import NeedsResyncError
from profilesync.faults import fault
from profilesync.mapping import quote
from profilesync.model import Checkpoint, Source, SyncResult, now
from profilesync.store.clickhouse.driver import quote_name
from profilesync.store.clickhouse.schema import column_type, literal
from profilesync.store.clickhouse.tables import SCRATCH, Tables
from profilesync.store.protocol import (
    DELETED,
    REJECTED_SAMPLE,
    NetChanges,
    QuotaPolicy,
    ambiguous_reason,
)

_JOIN = "SETTINGS join_use_nulls = 1"


class Applier(Tables):
    """The ``apply`` part of the store protocol."""

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
        """Apply ``changes``; with ``full``, users absent from them are deleted. Only rows
        that differ are written and metered; they become visible with the checkpoint."""
        table, pending = source.profile_table, self.pending_name(source)
        self.settle(source)
        rows = changes.rows()
        wanted = self._duckdb_types(rows.schema)
        props = [n for n in wanted if n not in ("user_id", DELETED)]
        try:
            self._ensure_table(source, {p: wanted[p] for p in props}, full)
            self._stage(table, rows, props, wanted)
            ambiguous, ambiguous_count = self._plan(source, props, full)
            _count(self, table, result)
            quota.check(self._used_this_month(self.con), result.operations)
            fault("apply")
            version = self.committed(source) + 1
            self._write(source, props, version)
            result.read = changes.read
            result.rejected = changes.rejected_count + ambiguous_count
            with self.transaction() as con:
                sample = [changes.rejected().select(["reason", "row"]).cast(_REJECTED), ambiguous]
                self._record_sync(con, source, checkpoint, result, pa.concat_tables(sample))
                self.set_committed(con, source, version)
                fault("before_commit")
        except BaseException:
            self.drop(pending)  # not committed: never visible
            raise
        finally:
            self.drop_scratch(*(f"{table}{s}" for s in SCRATCH))
        fault("after_commit")  # committed, not attached: the next open attaches them
        self.settle(source)  # committed: attach the pending rows
        return result

    def _duckdb_types(self, schema: pa.Schema) -> dict[str, str]:
        """The stream's columns as DuckDB names their types (the names a person sees)."""
        self.con.register("_net_schema", schema.empty_table())
        try:
            rows = self.con.execute("DESCRIBE SELECT * FROM _net_schema").fetchall()
        finally:
            self.con.unregister("_net_schema")
        return {str(r[0]): str(r[1]) for r in rows}

    def _ensure_table(self, source: Source, wanted: dict[str, str], full: bool) -> None:
        """Create the source's table and follow the mapping's columns and types.

        A type change converts the stored values when every one of them converts (DuckDB's
        casts, so values read the same as on the DuckDB store); else a full snapshot
        re-fills the column, and a change stream asks for a resync.
        """
        table = source.profile_table
        self.run(self.layout.profiles(table, wanted))
        existing = self.columns([table])[table]
        changed = False
        for name in set(existing) - set(wanted):
            self.run(self.layout.alter(table, f"DROP COLUMN {quote_name(name)}"))
            changed = True
        for name, dtype in wanted.items():
            if existing.get(name) == dtype:
                continue
            changed = True
            if name in existing and self._convert(source, name, dtype):
                continue
            if name in existing and not full:
                raise NeedsResyncError(
                    f"property {name!r} changed type from {existing[name]} to {dtype} in the "
                    "warehouse and the values already stored cannot be converted. Nothing was "
                    "applied. Run the sync with --resync to re-read the table as it is now."
                )
            if name in existing:
                self.run(self.layout.alter(table, f"DROP COLUMN {quote_name(name)}"))
            added = f"{quote_name(name)} {column_type(dtype, name)} COMMENT {literal(dtype)}"
            self.run(self.layout.alter(table, f"ADD COLUMN {added}"))
        if changed or self.view_name(source) not in self.tables():
            self.refresh_view(source)

    def _convert(self, source: Source, name: str, dtype: str) -> bool:
        """Rewrite the table with ``name`` cast to ``dtype`` by DuckDB, if every value casts.

        The current rows stream through DuckDB into a copy that replaces the table in one
        ``EXCHANGE``; a value that does not cast drops the copy and changes nothing.
        """
        table, copy = source.profile_table, f"{source.profile_table}_convert"
        self.run(self.layout.like(copy, table))
        changed = f"{quote_name(name)} {column_type(dtype, name)} COMMENT {literal(dtype)}"
        self.run(self.layout.alter(copy, f"MODIFY COLUMN {changed}"))
        reader = self.driver.connect()
        try:
            stream = reader.stream_arrow(f"SELECT * FROM {table} FINAL WHERE _is_deleted = 0")
            for batch in stream:
                self.con.register("_convert", pa.Table.from_batches([batch]))
                try:
                    bad = self.con.execute(
                        f"SELECT count(*) FROM _convert WHERE {quote(name)} IS NOT NULL "
                        f"AND TRY_CAST({quote(name)} AS {dtype}) IS NULL"
                    ).fetchone()
                    if bad and bad[0]:
                        self.drop(copy)
                        return False
                    cast = self.con.execute(
                        f"SELECT * REPLACE (CAST({quote(name)} AS {dtype}) AS {quote(name)}) "
                        "FROM _convert"
                    ).to_arrow_table()
                finally:
                    self.con.unregister("_convert")
                self.driver.insert_arrow(copy, cast.column_names, cast)
        finally:
            reader.close()
        self.run(self.layout.exchange(copy, table))
        self.drop(copy)
        return True

    def _stage(
        self, table: str, rows: pa.RecordBatchReader, props: list[str], wanted: dict[str, str]
    ) -> None:
        """The stream, read once, into ``_stage`` on disk."""
        columns = "".join(f", {quote_name(p)} {column_type(wanted[p], p)}" for p in props)
        self.driver.execute(
            f"CREATE TABLE {table}_stage (user_id String, {DELETED} Bool{columns}) "
            "ENGINE = MergeTree ORDER BY user_id"
        )
        self.driver.insert_arrow(f"{table}_stage", ["user_id", DELETED, *props], rows)

    def _plan(self, source: Source, props: list[str], full: bool) -> tuple[pa.Table, int]:
        """``_plan``: each user's net change against the current rows; the ambiguous rows."""
        table, view = source.profile_table, self.view_name(source)
        self.driver.execute(
            f"CREATE TABLE {table}_repeats ENGINE = MergeTree ORDER BY user_id AS "
            f"SELECT user_id, countIf(NOT {DELETED}) AS n FROM {table}_stage "
            "GROUP BY user_id HAVING count() > 1"
        )
        ambiguous = self._ambiguous(table, props)
        # distinct aliases: a ClickHouse alias is seen by every expression of its query
        picked = "".join(
            f", anyIf(s.{quote_name(p)}, NOT s.{DELETED}) AS _v{i}" for i, p in enumerate(props)
        )
        named = "".join(f", _v{i} AS {quote_name(p)}" for i, p in enumerate(props))
        net = (
            f"SELECT user_id, _kept != 1 AS {DELETED}{named} FROM (SELECT s.user_id AS user_id, "
            f"countIf(NOT s.{DELETED}) AS _kept{picked} FROM {table}_stage s GROUP BY s.user_id)"
        )
        same = " AND ".join(
            f"isNotDistinctFrom(n.{quote_name(p)}, p.{quote_name(p)})" for p in props
        )
        values = "".join(f", n.{quote_name(p)} AS {quote_name(p)}" for p in props)
        self.driver.execute(
            f"CREATE TABLE {table}_plan ENGINE = MergeTree ORDER BY user_id AS "
            f"SELECT n.user_id AS user_id, n.{DELETED} AS {DELETED}{values}, "
            "p.user_id IS NOT NULL AS _exists, "
            f"(p.user_id IS NOT NULL AND {same or 'true'}) AS _same "
            f"FROM ({net}) n LEFT JOIN {view} p ON n.user_id = p.user_id {_JOIN}"
        )
        if full:  # users the snapshot no longer has are deletes (GLOBAL: on a cluster the
            # scratch table is on this node only, the view on every shard)
            self.driver.execute(
                f"INSERT INTO {table}_plan (user_id, {DELETED}, _exists, _same) "
                f"SELECT p.user_id, true, true, false FROM {view} p "
                f"GLOBAL LEFT ANTI JOIN {table}_stage s ON p.user_id = s.user_id"
            )
        return ambiguous

    def _ambiguous(self, table: str, props: list[str]) -> tuple[pa.Table, int]:
        """Rejected rows (``reason``, ``row`` as JSON) of users on several kept rows: all
        counted, a sample kept; worded by DuckDB, exactly as the DuckDB store words them."""
        count = self.scalar(f"SELECT sum(n) FROM {table}_repeats WHERE n > 1") or 0
        columns = "".join(f", s.{quote_name(p)} AS {quote_name(p)}" for p in props)
        sample = self.driver.query_arrow(
            f"SELECT s.user_id AS user_id, r.n AS _n{columns} FROM {table}_stage s "
            f"JOIN {table}_repeats r ON s.user_id = r.user_id "
            f"WHERE r.n > 1 AND NOT s.{DELETED} ORDER BY s.user_id LIMIT {REJECTED_SAMPLE}"
        )
        if not count or not sample.num_columns:
            return _REJECTED.empty_table(), 0
        fields = "".join(f", {quote(p)} := {quote(p)}" for p in props)
        self.con.register("_ambiguous", sample)
        try:
            worded = self.con.execute(
                f"SELECT {ambiguous_reason('user_id', '_n')} AS reason, "
                f"to_json(struct_pack(user_id := user_id{fields}))::VARCHAR AS row FROM _ambiguous"
            ).to_arrow_table()
        finally:
            self.con.unregister("_ambiguous")
        return worded, int(count)

    def _write(self, source: Source, props: list[str], version: int) -> None:
        """The changed users' new rows and deletes, into the pending table."""
        table, pending = source.profile_table, self.pending_name(source)
        self.run(self.layout.like(pending, table))
        stamp = {"t": now().isoformat(sep=" ").split("+")[0], "v": version}
        synced = "toDateTime64({t:String}, 6, 'UTC'), {v:UInt64}"
        self.driver.execute(
            f"INSERT INTO {pending} (user_id, _synced_at, _version, _is_deleted) "
            f"SELECT user_id, {synced}, 1 FROM {table}_plan WHERE {DELETED} AND _exists",
            stamp,
        )
        fault("mid_apply")
        columns = "".join(f", {quote_name(p)}" for p in props)
        self.driver.execute(
            f"INSERT INTO {pending} (user_id{columns}, _synced_at, _version, _is_deleted) "
            f"SELECT user_id{columns}, {synced}, 0 FROM {table}_plan WHERE NOT {DELETED} AND NOT _same",
            stamp,
        )


_REJECTED = pa.schema([("reason", pa.string()), ("row", pa.string())])


def _count(tables: Tables, table: str, result: SyncResult) -> None:
    counts = tables.driver.query_arrow(
        f"SELECT countIf(NOT {DELETED} AND NOT _exists), "
        f"countIf(NOT {DELETED} AND _exists AND NOT _same), countIf({DELETED} AND _exists), "
        f"countIf(NOT {DELETED} AND _same) FROM {table}_plan"
    )
    result.inserted, result.updated, result.deleted, result.unchanged = (
        int(c[0].as_py() or 0) for c in counts.columns
    )
