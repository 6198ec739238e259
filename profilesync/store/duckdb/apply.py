"""A sync's changes applied to a source's profile table, in one transaction.

The changes arrive as a stream (:class:`profilesync.store.protocol.NetChanges`) that this
store's own engine stages while reading it, spilling to the home's temp directory past
the memory limit; nothing holds the whole window in Python. Two ways:

- **load**: a snapshot into a source that holds no rows yet (a first sync) is appended
  to the table straight from the stream; users that came on several rows are then found
  with one aggregate and taken out again as ambiguous;
- **plan**: anything else is joined against the table into ``_plan``, which classifies
  each change (new user, real update, no-op, delete); users a snapshot no longer has are
  deletes when the snapshot is ``full``. The changed users' rows are deleted through the
  row ids the join found and their new rows appended: no index, so a sync's cost stays
  close to the size of its changes (an ART index makes large deletes slow in DuckDB;
  updates in place rewrite whole row groups at checkpoint).

Everything a sync changes commits together: rows, checkpoint, run, rejected rows, usage.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa

from profilesync.errors import NeedsResyncError
from profilesync.faults import fault
from profilesync.mapping import quote
from profilesync.model import Checkpoint, Source, SyncResult, now
from profilesync.store.duckdb.catalog import CatalogTables
from profilesync.store.protocol import (
    DELETED,
    REJECTED_SAMPLE,
    TEMP_DIR,
    NetChanges,
    QuotaPolicy,
    ambiguous_reason,
)

OWN_COLUMNS = ("user_id", "_synced_at")
_TEMP = ("_plan", "_repeats", "_repeated", "_ambiguous_rows")


class Applier(CatalogTables):
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
        """Apply ``changes``; with ``full``, users absent from them are deleted (a snapshot diff).

        Only rows that differ from the store are written and metered. The store, the
        checkpoint, the run and the usage commit together; any error rolls all back.
        """
        table = source.profile_table
        self._incoming(changes)
        try:
            with self.transaction() as con:
                con.execute("CREATE TEMP TABLE _ambiguous_rows (reason VARCHAR, row VARCHAR)")
                wanted = types(con, "SELECT * FROM net_stream")
                props = [name for name in wanted if name not in ("user_id", DELETED)]
                self._ensure_profile_table(con, table, wanted, full)
                if not changes.compacted and _empty(con, table):
                    self._load(con, table, props, result, quota)
                else:
                    self._plan(con, table, props, full, changes.compacted)
                    _count(con, result)
                    quota.check(self._used_this_month(con), result.operations)
                    fault("apply")
                    _write(con, table, props)
                result.read = changes.read
                result.rejected = changes.rejected_count + _ambiguous_count(con)
                ambiguous = con.execute(
                    f"SELECT reason, row FROM _ambiguous_rows LIMIT {REJECTED_SAMPLE}"
                ).to_arrow_table()
                sample = pa.concat_tables([changes.rejected().cast(ambiguous.schema), ambiguous])
                self._record_sync(con, source, checkpoint, result, sample)
                fault("before_commit")
        finally:  # outside the transaction: after a rollback it would fail and hide the cause
            for temp in _TEMP:
                self.con.execute(f"DROP TABLE IF EXISTS {temp}")
            self.con.execute("DROP VIEW IF EXISTS net_stream")
            self.con.unregister("net_arrow")
        return result

    def _incoming(self, changes: NetChanges) -> None:
        """``net_stream``: the rows to apply, read from the engine's files where this store
        may read them (DuckDB reads Parquet within its memory limit), else as a stream."""
        files = changes.files()
        temp = (self.home / TEMP_DIR).resolve()
        if files and all(Path(f).resolve().is_relative_to(temp) for f in files):
            listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
            self.con.execute(
                f"CREATE TEMP VIEW net_stream AS SELECT * EXCLUDE (_reason, _row) "
                f"FROM read_parquet([{listed}]) WHERE _reason IS NULL"
            )
        else:
            self.con.register("net_arrow", changes.rows())
            self.con.execute("CREATE TEMP VIEW net_stream AS SELECT * FROM net_arrow")

    def _load(
        self,
        con: duckdb.DuckDBPyConnection,
        table: str,
        props: list[str],
        result: SyncResult,
        quota: QuotaPolicy,
    ) -> None:
        """Append a first snapshot as it streams in, then take out users on several rows."""
        columns = "".join(f", {quote(p)}" for p in props)
        fault("apply")
        row = con.execute(
            f"INSERT INTO {table} (user_id{columns}, _synced_at) "
            f"SELECT user_id{columns}, ? FROM net_stream WHERE NOT {DELETED}",
            [now()],
        ).fetchone()
        fault("mid_apply")
        con.execute(f"""CREATE TEMP TABLE _repeats AS SELECT user_id, count(*) AS n
                        FROM {table} GROUP BY user_id HAVING count(*) > 1""")
        _keep_ambiguous(
            con, f"SELECT t.* FROM {table} t SEMI JOIN _repeats r USING (user_id)", props
        )
        con.execute(f"DELETE FROM {table} WHERE user_id IN (SELECT user_id FROM _repeats)")
        result.inserted = int(row[0] if row else 0) - _ambiguous_count(con)
        result.updated = result.deleted = result.unchanged = 0
        quota.check(self._used_this_month(con), result.operations)

    def _plan(
        self, con: duckdb.DuckDBPyConnection, table: str, props: list[str], full: bool, unique: bool
    ) -> None:
        """Classify each change against the store: new user, real update, no-op, delete."""
        same = " AND ".join(f"n.{quote(p)} IS NOT DISTINCT FROM p.{quote(p)}" for p in props)
        con.execute(f"""CREATE TEMP TABLE _plan AS SELECT n.*, p.rowid AS _rowid,
                        p.user_id IS NOT NULL AS _exists,
                        (p.user_id IS NOT NULL AND {same or "true"}) AS _same
                        FROM net_stream n LEFT JOIN {table} p ON n.user_id = p.user_id""")
        if full:  # users the snapshot no longer has are deletes (the stream is read once)
            con.execute(f"""INSERT INTO _plan BY NAME
                SELECT s.user_id, true AS {DELETED}, s.rowid AS _rowid, true AS _exists,
                       false AS _same
                FROM {table} s ANTI JOIN _plan n ON s.rowid = n._rowid""")
        if not unique:
            _resolve_repeats(con, props)

    def _ensure_profile_table(
        self, con: duckdb.DuckDBPyConnection, table: str, wanted: dict[str, str], full: bool
    ) -> None:
        """Create the source's table and follow the mapping's columns and types.

        A type change converts the stored values when every one of them converts; else a
        full snapshot re-fills the column, and a change stream asks for a resync.
        """
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {table} (user_id VARCHAR NOT NULL, _synced_at TIMESTAMPTZ)"
        )
        existing = types(con, table)
        for name in set(existing) - set(wanted) - set(OWN_COLUMNS):
            con.execute(f"ALTER TABLE {table} DROP COLUMN {quote(name)}")  # no longer mapped
        for name, dtype in wanted.items():
            if name in ("user_id", DELETED) or existing.get(name) == dtype:
                continue
            if name in existing and _converts(con, table, name, dtype):
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


def _resolve_repeats(con: duckdb.DuckDBPyConnection, props: list[str]) -> None:
    """A snapshot's users on several rows: one kept row wins over filtered-out ones (deletes);
    several kept rows are ambiguous, rejected, and the user deleted."""
    con.execute(f"""CREATE TEMP TABLE _repeats AS SELECT user_id, count_if(NOT {DELETED}) AS n
                    FROM _plan GROUP BY user_id HAVING count(*) > 1""")
    if not _scalar(con, "SELECT count(*) FROM _repeats"):
        return
    con.execute(
        "CREATE TEMP TABLE _repeated AS SELECT * FROM _plan SEMI JOIN _repeats USING (user_id)"
    )
    _keep_ambiguous(
        con,
        f"SELECT p.* FROM _repeated p JOIN _repeats r USING (user_id) WHERE r.n > 1 AND NOT p.{DELETED}",
        props,
    )
    con.execute("DELETE FROM _plan WHERE user_id IN (SELECT user_id FROM _repeats)")
    con.execute(f"""INSERT INTO _plan BY NAME
        SELECT * EXCLUDE (n) REPLACE (n > 1 OR {DELETED} AS {DELETED}) FROM (
            SELECT p.*, r.n FROM _repeated p JOIN _repeats r USING (user_id)
            QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY {DELETED}) = 1)""")


def _keep_ambiguous(con: duckdb.DuckDBPyConnection, rows: str, props: list[str]) -> None:
    """``_ambiguous_rows``: the rejected rows (reason, row) of users on several kept rows."""
    fields = "".join(f", {quote(p)} := {quote(p)}" for p in props)
    con.execute(f"""INSERT INTO _ambiguous_rows
        SELECT {ambiguous_reason("a.user_id", "count(*) OVER (PARTITION BY a.user_id)")} AS reason,
               to_json(struct_pack(user_id := a.user_id{fields}))::VARCHAR AS row
        FROM ({rows}) a""")


def _ambiguous_count(con: duckdb.DuckDBPyConnection) -> int:
    return _scalar(con, "SELECT count(*) FROM _ambiguous_rows")


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


def _write(con: duckdb.DuckDBPyConnection, table: str, props: list[str]) -> None:
    """Delete the changed users' rows, then append their new ones."""
    columns = "".join(f", {quote(p)}" for p in props)
    # by the row ids the plan's join found: no second scan of the user_id column
    con.execute(
        f"DELETE FROM {table} WHERE rowid IN (SELECT _rowid FROM _plan "
        f"WHERE _exists AND ({DELETED} OR NOT _same))"
    )
    fault("mid_apply")
    con.execute(
        f"INSERT INTO {table} (user_id{columns}, _synced_at) "
        f"SELECT user_id{columns}, ? FROM _plan WHERE NOT {DELETED} AND NOT _same",
        [now()],
    )


def _empty(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    return con.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is None


def _converts(con: duckdb.DuckDBPyConnection, table: str, name: str, dtype: str) -> bool:
    return not _scalar(
        con,
        f"SELECT count(*) FROM {table} WHERE {quote(name)} IS NOT NULL "
        f"AND TRY_CAST({quote(name)} AS {dtype}) IS NULL",
    )


def types(
    con: duckdb.DuckDBPyConnection, relation: str, skip: tuple[str, ...] = ()
) -> dict[str, str]:
    """Column name -> SQL type of a table or query, in column order."""
    rows = con.execute(f"DESCRIBE {relation}").fetchall()
    return {str(r[0]): str(r[1]) for r in rows if str(r[0]) not in skip}


def _scalar(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    return int(row[0]) if row and row[0] is not None else 0
