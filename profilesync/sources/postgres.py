"""PostgreSQL tables read by logical decoding, with ``psycopg`` 3 and ``wal2json``.

Every CDC source owns one logical replication slot, ``profilesync_<source>``, with the
``wal2json`` output plugin (format version 2). Its life:

* **First sync and ``--resync``** (``snapshot``): the slot is (re)created over a
  replication connection with ``CREATE_REPLICATION_SLOT ... LOGICAL wal2json`` exporting a
  snapshot, and the table is read in a ``REPEATABLE READ`` transaction that imports it
  (``SET TRANSACTION SNAPSHOT``). This is how Postgres' own logical replication copies a
  table: the exported snapshot holds exactly the transactions that committed before the
  slot's consistent point, and the slot decodes exactly those that commit after it, so no
  change is lost or read twice. (Creating the slot and *then* reading "the latest" data
  is not consistent: a transaction whose commit record precedes the position read may
  still be invisible to the snapshot.) The checkpoint is the consistent point.
* **Later syncs** (``changes``): the slot is *peeked* (``pg_logical_slot_peek_changes``),
  never consumed, so a crash before the store commits loses nothing. The checkpoint
  becomes the end of the last decoded commit. Only at the start of the *next* sync is the
  slot advanced to the committed checkpoint (``pg_replication_slot_advance``); a crash
  between the store's commit and that advance just means the next run peeks those
  changes again and drops every transaction that committed at or before its checkpoint.
  The slot therefore keeps the WAL of one sync window more than strictly needed.
* **``profilesync source delete``** (``release``) drops the slot. An abandoned slot keeps
  every WAL segment written after it on the server's disk.
* **Snapshot diffs** (``--strategy diff``, queries with joins) and previews read the
  current rows in one ``REPEATABLE READ`` transaction and create no slot
  (``diff_snapshot``; the engine calls it for diff sources).

The JSON that wal2json writes is parsed in DuckDB over Arrow batches and every value is
converted from Postgres' text form by the same SQL casts as a snapshot, so snapshot and
change values are identical. Drop-and-replace shows as a different relation OID; a slot
that is gone or invalidated (``wal_status = 'lost'``, see ``max_slot_wal_keep_size``)
needs a resync.
"""

from __future__ import annotations

import functools
import hashlib
import io
import itertools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import sqlglot
from sqlglot import exp

from profilesync.errors import (
    ChangeTrackingError,
    ConcurrentSyncError,
    ConfigurationError,
    MissingDependencyError,
    NotFoundError,
    ProfilesyncError,
    RetentionExceededError,
    TableReplacedError,
    WarehouseUnavailableError,
)
from profilesync.mapping import QUERY_TABLE, quote
from profilesync.model import Checkpoint, Connection, Mapping, format_frequency
from profilesync.sources.base import DELETE, OP, ORD, UPSERT, Changes, Check, Level

if TYPE_CHECKING:
    import psycopg

PLUGIN = "wal2json"
SLOT_PREFIX = "profilesync_"
MIN_SERVER_VERSION = 130000  # pg_replication_slots.wal_status
KEEP_SIZE = "max_slot_wal_keep_size"
_ARROW = {
    "string": pa.string(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "date": pa.date32(),
}
_KINDS = {
    "int2": "int16",
    "int4": "int32",
    "int8": "int64",
    "oid": "int64",
    "float4": "float64",
    "float8": "float64",
    "numeric": "float64",
    "bool": "bool",
    "timestamp": "timestamp",
    "timestamptz": "timestamp",
    "date": "date",
}
#: DuckDB casts from Postgres' text output (``{}`` is the text). Values JSON cannot hold
#: (NaN, infinities) become NULL, as wal2json writes them.
_CASTS = {
    "string": "{}",
    "int16": "CAST({} AS SMALLINT)",
    "int32": "CAST({} AS INTEGER)",
    "int64": "CAST({} AS BIGINT)",
    "float64": "CASE WHEN lower({}) IN ('nan', 'infinity', '-infinity') THEN NULL ELSE CAST({} AS DOUBLE) END",
    "bool": "CAST({} AS BOOLEAN)",
    "timestamp": "CASE WHEN {} IN ('infinity', '-infinity') THEN NULL ELSE TRY_CAST({} AS TIMESTAMPTZ) END",
    "date": "CASE WHEN {} IN ('infinity', '-infinity') THEN NULL ELSE TRY_CAST({} AS DATE) END",
    # a timestamp without time zone is read as UTC wall-clock time
    "naive": "CASE WHEN {} IN ('infinity', '-infinity') THEN NULL "
    "ELSE timezone('UTC', TRY_CAST({} AS TIMESTAMP)) END",
}
#: one wal2json v2 change, as much of it as profilesync reads
_CHANGE_JSON = (
    '{"action": "VARCHAR", "columns": [{"name": "VARCHAR", "value": "JSON"}], '
    '"identity": [{"name": "VARCHAR", "value": "JSON"}]}'
)
#: wal2json's commit marker as written without include-xids / include-timestamp
_COMMIT = '{"action":"C"}'
_SESSION = "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET extra_float_digits = 1"


@dataclass(frozen=True)
class Column:
    """A column and how it travels: Postgres type name, Arrow kind, and ``timestamp`` vs ``timestamptz``."""

    name: str
    typname: str

    @property
    def kind(self) -> str:
        return _KINDS.get(self.typname, "string")

    @property
    def arrow(self) -> pa.DataType:
        return _ARROW[self.kind]

    @property
    def naive(self) -> bool:
        return self.typname == "timestamp"

    def text(self) -> str:
        """Postgres SQL for the column's text form as its output function writes it (what
        wal2json sends): ``::text`` would trim ``char(n)`` padding."""
        column = quote(self.name)
        if self.typname == "bpchar":
            return f"CASE WHEN {column} IS NOT NULL THEN format('%s', {column}) END"
        return f"{column}::text"

    def cast(self, text: str) -> str:
        """DuckDB SQL turning this column's Postgres text form ``text`` into its value."""
        return _CASTS["naive" if self.naive else self.kind].replace("{}", text)


@dataclass(frozen=True)
class Relation:
    """A table as found in the catalog."""

    oid: int
    schema: str
    name: str
    kind: str  # pg_class.relkind
    columns: tuple[Column, ...]

    @property
    def qualified(self) -> str:
        return f"{quote(self.schema)}.{quote(self.name)}"

    @property
    def label(self) -> str:
        return table_label(self.schema, self.name)


def slot_name(source_name: str) -> str:
    """``profilesync_<source>``; names that are not plain lower-case identifiers get a hash."""
    clean = re.sub(r"[^a-z0-9_]", "_", source_name.lower())
    if clean == source_name and len(SLOT_PREFIX) + len(clean) <= 63:
        return SLOT_PREFIX + clean
    digest = hashlib.sha1(source_name.encode()).hexdigest()[:8]
    return f"{SLOT_PREFIX}{clean[:40]}_{digest}"


def table_label(schema: str, name: str) -> str:
    """``schema.table``, both parts quoted where a dot or quote would make it ambiguous."""
    if any("." in p or '"' in p for p in (schema, name)):
        return f"{quote(schema)}.{quote(name)}"
    return f"{schema}.{name}"


def split_table(table: str) -> tuple[str, str]:
    """``schema.table`` (parts may be double-quoted) -> ``(schema, table)``; no schema: ``""``."""
    if '"' not in table:
        schema, _, name = table.partition(".")
        return (schema, name) if name else ("", schema)
    parsed = exp.to_table(table, dialect="postgres")
    return parsed.db, parsed.name


def lsn_int(text: str) -> int:
    """``'16/B374D848'`` -> its byte position."""
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


def lsn_text(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def _escape_filter(name: str) -> str:
    """wal2json's ``add-tables`` splits on ``,`` and ``.``, treats ``*`` as a wildcard."""
    return re.sub(r"([\\,.* ])", r"\\\1", name)


class PostgresSource:
    kind: ClassVar[str] = "postgres"
    dialect: ClassVar[str] = "postgres"
    supports_cdc: ClassVar[bool] = True
    supports_query: ClassVar[bool] = True
    secret_fields: ClassVar[tuple[str, ...]] = ("password",)

    def __init__(self, connection: Connection, source_name: str = "") -> None:
        self.dsn: str = connection.config["dsn"]
        self.password: str | None = connection.config.get("password")
        self.source_name = source_name
        self._open: list[psycopg.Connection[Any]] = []

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        dsn = config.get("dsn")
        if not dsn:
            raise ConfigurationError(
                "a postgres connection needs --dsn, a libpq connection string such as "
                "'host=db.example.com port=5432 dbname=analytics user=profilesync' "
                "(give the password with --option password=...)"
            )
        psycopg = _psycopg()
        try:
            psycopg.conninfo.conninfo_to_dict(dsn)
        except psycopg.ProgrammingError as exc:
            raise ConfigurationError(
                f"--dsn is not a valid libpq connection string: {exc}"
            ) from None
        return {k: v for k, v in config.items() if k in ("dsn", "password") and v}

    @property
    def slot(self) -> str:
        if not self.source_name:
            raise ConfigurationError(
                "a postgres replication slot is named after its source: no source name given"
            )
        return slot_name(self.source_name)

    # -- connections -----------------------------------------------------------------------
    def connect(self, *, replication: bool = False) -> psycopg.Connection[Any]:
        """An autocommit session in UTC; ``replication`` opens a walsender session."""
        psycopg = _psycopg()
        extra: dict[str, Any] = {"replication": "database"} if replication else {}
        if self.password:
            extra["password"] = self.password
        try:
            conn = psycopg.connect(self.dsn, autocommit=True, **extra)
        except psycopg.OperationalError as exc:
            raise WarehouseUnavailableError(
                f"could not connect to PostgreSQL: {_first_line(exc)}. Check the connection's "
                "--dsn and that the server accepts connections from here"
            ) from None
        self._open.append(conn)
        if not replication:
            conn.execute(_SESSION)
        return conn

    @contextmanager
    def session(self) -> Iterator[psycopg.Connection[Any]]:
        """A session for one call, closed at its end; driver errors become ours."""
        with _errors():
            conn = self.connect()
            try:
                yield conn
            finally:
                conn.close()

    def close(self) -> None:
        for conn in self._open:
            conn.close()
        self._open.clear()

    # -- discovery -----------------------------------------------------------------------
    def list_tables(self) -> list[str]:
        with self.session() as conn:
            cur = conn.execute(
                """SELECT n.nspname, c.relname FROM pg_class c
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
                     AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                     AND n.nspname NOT LIKE 'pg\\_%'
                   ORDER BY 1, 2"""
            )
            return [table_label(schema, name) for schema, name in cur.fetchall()]

    def table_schema(self, table: str) -> pa.Schema:
        with self.session() as conn:
            relation = self.relation(conn, table)
        return pa.schema([pa.field(c.name, c.arrow) for c in relation.columns])

    def relation(self, conn: psycopg.Connection[Any], table: str) -> Relation:
        """The table ``schema.table`` (or a bare name on the search path) in the catalog."""
        schema, name = split_table(table)
        where = (
            "n.nspname = %s AND c.relname = %s"
            if schema
            else "c.oid = to_regclass(quote_ident(%s))"
        )
        row = conn.execute(
            f"""SELECT c.oid, n.nspname, c.relname, c.relkind FROM pg_class c
                JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {where}""",
            [schema, name] if schema else [name],
        ).fetchone()
        if row is None:
            raise NotFoundError(
                f"table {table!r} not found in PostgreSQL (name it schema.table; "
                "`profilesync connection tables NAME` lists them)"
            )
        columns = conn.execute(
            """SELECT a.attname, coalesce(nullif(b.typname, ''), t.typname) FROM pg_attribute a
               JOIN pg_type t ON t.oid = a.atttypid LEFT JOIN pg_type b ON b.oid = t.typbasetype
               WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum""",
            [row[0]],
        ).fetchall()
        return Relation(int(row[0]), row[1], row[2], row[3], tuple(Column(*c) for c in columns))

    def _query_columns(self, conn: psycopg.Connection[Any], query: str) -> tuple[Column, ...]:
        """Output columns of a query, typed through the catalog (the query is not run)."""
        cur = conn.execute(f"SELECT * FROM ({query}) AS q LIMIT 0")
        oids = [d.type_code for d in cur.description or []]
        names = dict(
            conn.execute(
                """SELECT t.oid, coalesce(nullif(b.typname, ''), t.typname) FROM pg_type t
                   LEFT JOIN pg_type b ON b.oid = t.typbasetype WHERE t.oid = ANY(%s)""",
                [oids],
            ).fetchall()
        )
        return tuple(Column(d.name, names.get(d.type_code, "text")) for d in cur.description or [])

    # -- test mapping ----------------------------------------------------------------------
    def check(self, mapping: Mapping, frequency_seconds: int, strategy: str) -> list[Check]:
        if mapping.table == QUERY_TABLE:
            return [_QUERY_CHECK]
        with self.session() as conn:
            relation = self.relation(conn, mapping.table)
            server = _server(conn, relation)
            checks = [
                Check("table", "pass", f"{relation.label} (OID {relation.oid})"),
                _select_check(relation, server),
            ]
            if strategy == "diff":
                return [*checks, _DIFF_CHECK]
            return checks + self._cdc_checks(conn, relation, server, mapping, frequency_seconds)

    def _cdc_checks(
        self,
        conn: psycopg.Connection[Any],
        relation: Relation,
        server: dict[str, Any],
        mapping: Mapping,
        frequency_seconds: int,
    ) -> list[Check]:
        if server["version"] < MIN_SERVER_VERSION:
            return [
                Check(
                    "server",
                    "fail",
                    f"PostgreSQL {server['version_text']}: change data capture needs 13 or later (use --strategy diff)",
                )
            ]
        if relation.kind != "r":
            return [_relkind_check(relation)]
        checks = [_wal_level_check(server), _replication_check(server)]
        if all(c.level == "pass" for c in checks):
            checks.append(self._replication_connection_check())
        checks.extend(self._slot_checks(conn, server, ready=all(c.level == "pass" for c in checks)))
        checks.extend(_identity_checks(conn, relation, mapping))
        checks.append(_keep_size_check(server, frequency_seconds))
        return checks

    def _replication_connection_check(self) -> Check:
        try:
            self.connect(replication=True).close()
        except WarehouseUnavailableError as exc:
            return Check(
                "replication connection",
                "fail",
                f"a replication connection (replication=database), which creates the slot, was refused: {exc}. "
                "Allow it in pg_hba.conf (the same line as normal connections to this database) and check max_wal_senders",
            )
        return Check(
            "replication connection", "pass", "replication=database connections are accepted"
        )

    def _slot_checks(
        self, conn: psycopg.Connection[Any], server: dict[str, Any], *, ready: bool
    ) -> list[Check]:
        state = self.slot_state(conn)
        if state is None:
            return [
                self._missing_slot_check(server),
                *([self._plugin_check(conn)] if ready else []),
            ]
        if not state["ours"]:
            return [Check("replication slot", "fail", self.foreign_slot_message(state["database"]))]
        if state["wal_status"] == "lost" or state["restart"] is None:
            return [
                Check(
                    "replication slot",
                    "warn",
                    f"{self.slot} was invalidated (wal_status = 'lost', see {KEEP_SIZE}): syncs "
                    f"fail until `profilesync sync {self.source_name} --resync` re-creates it "
                    "(a first sync re-creates it too)",
                )
            ]
        retained = _scalar(
            conn, "SELECT pg_size_pretty(pg_current_wal_lsn() - %s::pg_lsn)", [state["restart"]]
        )
        level: Level = "warn" if state["wal_status"] == "unreserved" else "pass"
        return [
            Check(
                "replication slot",
                level,
                f"{self.slot} ({state['plugin']}) holds {retained} of WAL since {state['restart']}; wal_status = {state['wal_status']}",
            )
        ]

    def _missing_slot_check(self, server: dict[str, Any]) -> Check:
        if server["slots_used"] >= server["max_slots"]:
            return Check(
                "replication slot",
                "fail",
                f"all {server['max_slots']} replication slots of the server are in use: the first sync could not create {self.slot}",
                f"ALTER SYSTEM SET max_replication_slots = {server['max_slots'] + 10}; -- then restart PostgreSQL",
            )
        return Check(
            "replication slot",
            "info",
            f"{self.slot} does not exist yet: the first sync creates it (with {PLUGIN}) and reads a consistent snapshot. "
            "If this source has synced before, its slot was dropped and a resync is needed",
        )

    def _plugin_check(self, conn: psycopg.Connection[Any]) -> Check:
        """Create and drop a temporary slot: the only way to know the plugin loads."""
        name = f"{SLOT_PREFIX}check_{conn.info.backend_pid}"
        psycopg = _psycopg()
        try:
            conn.execute("SET statement_timeout = '10s'")
            conn.execute("SELECT pg_create_logical_replication_slot(%s, %s, true)", [name, PLUGIN])
            conn.execute("SELECT pg_drop_replication_slot(%s)", [name])
        except psycopg.errors.QueryCanceled:
            return Check(
                PLUGIN,
                "warn",
                f"could not create a test slot within 10 s (long-running transactions delay it); {PLUGIN} not verified",
            )
        except psycopg.Error as exc:
            return Check(
                PLUGIN,
                "fail",
                f"the {PLUGIN} output plugin could not be loaded: {_first_line(exc)}. Install it on the server "
                "(Debian/Ubuntu: apt install postgresql-<version>-wal2json; Amazon RDS, Aurora, Cloud SQL and Azure ship it)",
            )
        finally:
            conn.execute("RESET statement_timeout")
        return Check(PLUGIN, "pass", f"the {PLUGIN} output plugin loads")

    # -- reading ---------------------------------------------------------------------------
    def snapshot(self, mapping: Mapping, limit: int | None = None) -> Changes:
        """A table's first sync or resync (re)creates the slot; a preview or a query does not."""
        if mapping.table == QUERY_TABLE or limit is not None:
            return self.diff_snapshot(mapping, limit)
        with _errors():
            return self._snapshot_with_slot(mapping)

    def diff_snapshot(self, mapping: Mapping, limit: int | None = None) -> Changes:
        """The current rows without a replication slot (snapshot diff, previews, queries)."""
        with _errors(), self._reading() as conn:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            lsn = _scalar(conn, "SELECT pg_current_wal_lsn()::text")
            if mapping.table == QUERY_TABLE:
                assert mapping.query is not None
                query = mapping.query.strip().rstrip(";")  # it runs as a subquery
                columns = self._query_columns(conn, query)
                source, identity = f"({query}) AS q", "query"
            else:
                relation = self.relation(conn, mapping.table)
                columns, source, identity = relation.columns, relation.qualified, str(relation.oid)
            return self._read(conn, mapping, columns, source, limit, Checkpoint(lsn, identity))

    @contextmanager
    def _reading(self) -> Iterator[psycopg.Connection[Any]]:
        """A session a returned reader goes on using (it closes it); closed here on failure."""
        conn = self.connect()
        try:
            yield conn
        except BaseException:
            conn.close()
            raise

    def _snapshot_with_slot(self, mapping: Mapping) -> Changes:
        with self._reading() as conn:
            return self._snapshot_at_slot(conn, mapping)

    def _snapshot_at_slot(self, conn: psycopg.Connection[Any], mapping: Mapping) -> Changes:
        self._drop_slot(conn)  # a resync starts the stream again at its own snapshot
        replication = self.connect(replication=True)
        try:
            point, snapshot = self._create_slot(replication)
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
        finally:
            # the imported snapshot lives on in conn's transaction
            replication.close()
        relation = self.relation(conn, mapping.table)
        checkpoint = Checkpoint(point, str(relation.oid), {"slot": self.slot})
        return self._read(conn, mapping, relation.columns, relation.qualified, None, checkpoint)

    def _create_slot(self, replication: psycopg.Connection[Any]) -> tuple[str, str]:
        version = replication.info.server_version
        export = "(SNAPSHOT 'export')" if version >= 150000 else "EXPORT_SNAPSHOT"
        row = replication.execute(
            f"CREATE_REPLICATION_SLOT {self.slot} LOGICAL {PLUGIN} {export}"
        ).fetchone()
        assert row is not None
        return str(row[1]), str(row[2])  # consistent_point, snapshot_name

    def _read(
        self,
        conn: psycopg.Connection[Any],
        mapping: Mapping,
        columns: tuple[Column, ...],
        source: str,
        limit: int | None,
        checkpoint: Checkpoint,
    ) -> Changes:
        wanted = _pick(columns, mapping.columns, source)
        texts = ", ".join(c.text() for c in wanted)
        sql = f"SELECT {texts} FROM {source}" + (
            f" LIMIT {int(limit)}" if limit is not None else ""
        )
        schema = pa.schema([pa.field(c.name, c.arrow) for c in wanted])
        batches = _typed(_copy_csv(conn, sql, len(wanted)), wanted, schema)
        return Changes(
            pa.RecordBatchReader.from_batches(schema, _commit_after(conn, batches)),
            checkpoint,
            full=True,
        )

    def changes(self, mapping: Mapping, checkpoint: Checkpoint) -> Changes:
        with self.session() as conn:
            relation = self._same_table(conn, mapping.table, checkpoint)
            self._advance(conn, checkpoint)
            raw = self._peek(conn, relation)
            self._same_table(conn, mapping.table, checkpoint)  # replaced while we peeked?
        return _decode(raw, relation, mapping, checkpoint, self.source_name)

    def _same_table(
        self, conn: psycopg.Connection[Any], table: str, checkpoint: Checkpoint
    ) -> Relation:
        try:
            relation = self.relation(conn, table)
        except NotFoundError:
            raise NotFoundError(
                f"table {table} no longer exists in PostgreSQL (it was dropped). Nothing was applied. "
                f"When it exists again, run `profilesync sync {self.source_name} --resync`"
            ) from None
        if str(relation.oid) != checkpoint.identity:
            raise TableReplacedError(
                f"table {table} was dropped and re-created (relation OID changed from "
                f"{checkpoint.identity} to {relation.oid}), as a dbt full refresh or CREATE OR REPLACE "
                "does. Nothing was applied. CDC needs incremental models; run "
                f"`profilesync sync {self.source_name} --resync` to diff the new table against the store."
            )
        return relation

    def slot_state(self, conn: psycopg.Connection[Any]) -> dict[str, Any] | None:
        """The slot's row of ``pg_replication_slots`` (None when it does not exist)."""
        cur = conn.execute(
            """SELECT database, plugin, wal_status, active_pid, confirmed_flush_lsn::text AS confirmed,
                      restart_lsn::text AS restart, database = current_database() AS ours
               FROM pg_replication_slots WHERE slot_name = %s""",
            [self.slot],
        )
        row = cur.fetchone()
        return dict(zip([d.name for d in cur.description or []], row, strict=True)) if row else None

    def _advance(self, conn: psycopg.Connection[Any], checkpoint: Checkpoint) -> None:
        """Release what the store has committed: the slot moves to the checkpoint, not past it."""
        state = self._usable_slot(conn)
        confirmed, target = lsn_int(state["confirmed"]), lsn_int(checkpoint.position)
        if confirmed > target:
            raise self._lost(
                f"replication slot {self.slot} was advanced to {state['confirmed']}, past this "
                f"source's checkpoint {checkpoint.position} (by another client, by a resync that did "
                "not finish, or the store was restored from a backup): the changes in between are gone"
            )
        if confirmed < target:
            conn.execute(
                "SELECT pg_replication_slot_advance(%s, %s::pg_lsn)",
                [self.slot, checkpoint.position],
            )

    def _usable_slot(self, conn: psycopg.Connection[Any]) -> dict[str, Any]:
        state = self.slot_state(conn)
        if state is None:
            raise self._lost(f"replication slot {self.slot} does not exist (it was dropped)")
        if not state["ours"]:
            raise ConfigurationError(self.foreign_slot_message(state["database"]))
        if state["wal_status"] == "lost" or state["restart"] is None:
            raise self._lost(
                f"replication slot {self.slot} was invalidated by the server (wal_status = 'lost'): "
                f"it fell behind by more than {KEEP_SIZE}"
            )
        if state["active_pid"] is not None:
            raise self._busy(state["active_pid"])
        return state

    def _busy(self, pid: int) -> ConcurrentSyncError:
        return ConcurrentSyncError(
            f"replication slot {self.slot} is in use by server process {pid}: another sync of "
            "this source is reading it; try again when it finishes"
        )

    def foreign_slot_message(self, database: str) -> str:
        return (
            f"replication slot {self.slot} belongs to database {database!r}; slot names are "
            "shared by the whole server. Name this source differently (slots are named "
            "profilesync_<source>)."
        )

    def _lost(self, why: str) -> RetentionExceededError:
        return RetentionExceededError(
            f"{why}. Nothing was applied. Raise {KEEP_SIZE} on the server (or sync more often), and "
            f"run `profilesync sync {self.source_name} --resync` to re-create the slot and diff the "
            "table against the store."
        )

    def _peek(self, conn: psycopg.Connection[Any], relation: Relation) -> pa.Table:
        """Every decoded change since the slot's position, without consuming it."""
        sql = """SELECT n, (lsn - '0/0'::pg_lsn)::int8, xid::text::int8, data
                  FROM pg_logical_slot_peek_changes(%s, NULL, NULL, 'format-version', '2',
                       'include-types', 'false', 'add-tables', %s) WITH ORDINALITY AS p(lsn, xid, data, n)
                  WHERE data <> '{"action":"B"}'"""
        filter_ = f"{_escape_filter(relation.schema)}.{_escape_filter(relation.name)}"
        names = ["n", "lsn", "xid", "data"]
        types = [pa.int64(), pa.int64(), pa.int64(), pa.string()]
        batches = list(_copy_csv(conn, sql, 4, [self.slot, filter_], names, types))
        schema = pa.schema(list(zip(names, types, strict=True)))
        return pa.Table.from_batches(batches, schema)

    def release(self, mapping: Mapping) -> None:
        """Drop this source's slot so the server stops keeping WAL for it."""
        with self.session() as conn:
            self._drop_slot(conn)

    def _drop_slot(self, conn: psycopg.Connection[Any]) -> None:
        state = self.slot_state(conn)
        if state is None:
            return
        if not state["ours"]:
            raise ConfigurationError(self.foreign_slot_message(state["database"]))
        if state["active_pid"] is not None:
            raise self._busy(state["active_pid"])
        conn.execute("SELECT pg_drop_replication_slot(%s)", [self.slot])


# -- test mapping checks ------------------------------------------------------------------

_QUERY_CHECK = Check(
    "query",
    "info",
    "snapshot diff: the query runs in PostgreSQL as written at every sync, and only rows that "
    "differ from the store are applied; no replication slot is used",
)
_DIFF_CHECK = Check(
    "strategy",
    "info",
    "snapshot diff: every sync reads the whole table and applies only rows that differ; "
    "no replication slot is used",
)
_RELKINDS = {
    "v": "a view",
    "m": "a materialized view",
    "p": "a partitioned table",
    "f": "a foreign table",
}


def _server(conn: psycopg.Connection[Any], relation: Relation) -> dict[str, Any]:
    """Settings and privileges the checks read, in one round trip."""
    cur = conn.execute(
        """SELECT current_user AS user, r.rolsuper AS superuser, r.rolreplication AS replication,
                  current_setting('wal_level') AS wal_level,
                  current_setting('server_version_num')::int AS version,
                  current_setting('server_version') AS version_text,
                  current_setting('max_replication_slots')::int AS max_slots,
                  (SELECT count(*) FROM pg_replication_slots) AS slots_used,
                  current_setting('max_slot_wal_keep_size') AS keep_size,
                  has_table_privilege(%s::oid, 'SELECT') AS can_select,
                  has_schema_privilege(%s, 'USAGE') AS can_use_schema
           FROM pg_roles r WHERE r.rolname = current_user""",
        [relation.oid, relation.schema],
    )
    row = cur.fetchone()
    assert row is not None
    return dict(zip([d.name for d in cur.description or []], row, strict=True))


def _select_check(relation: Relation, server: dict[str, Any]) -> Check:
    user = quote(server["user"])
    if server["can_select"] and server["can_use_schema"]:
        return Check("privileges", "pass", f"{server['user']} may read {relation.label}")
    return Check(
        "privileges",
        "fail",
        f"{server['user']} may not read {relation.label}",
        f"GRANT USAGE ON SCHEMA {quote(relation.schema)} TO {user}; GRANT SELECT ON {relation.qualified} TO {user};",
    )


def _relkind_check(relation: Relation) -> Check:
    return Check(
        "change data capture",
        "fail",
        f"{relation.label} is {_RELKINDS.get(relation.kind, 'not a plain table')}: logical decoding "
        "reports changes of plain tables only (a partitioned table's under each partition's name). "
        "Use --strategy diff, or point the source at the underlying table",
    )


def _wal_level_check(server: dict[str, Any]) -> Check:
    if server["wal_level"] == "logical":
        return Check("wal_level", "pass", "wal_level = logical")
    return Check(
        "wal_level",
        "fail",
        f"wal_level = {server['wal_level']}: logical decoding needs wal_level = logical "
        "(a server restart applies it; on managed services set the parameter group's logical replication flag)",
        "ALTER SYSTEM SET wal_level = logical; -- then restart PostgreSQL",
    )


def _replication_check(server: dict[str, Any]) -> Check:
    if server["superuser"] or server["replication"]:
        how = "superuser" if server["superuser"] else "REPLICATION attribute"
        return Check("replication privilege", "pass", f"{server['user']} has the {how}")
    return Check(
        "replication privilege",
        "fail",
        f"{server['user']} can neither create nor read replication slots: it needs the REPLICATION "
        "attribute (Amazon RDS/Aurora: GRANT rds_replication TO the user)",
        f"ALTER ROLE {quote(server['user'])} WITH REPLICATION;",
    )


def _identity_checks(
    conn: psycopg.Connection[Any], relation: Relation, mapping: Mapping
) -> list[Check]:
    """Deletes carry only the replica identity's old values: user_id must be among them."""
    mode, keys = _replica_identity(conn, relation)
    full = f"ALTER TABLE {relation.qualified} REPLICA IDENTITY FULL;"
    if mode == "f":
        return [
            Check(
                "replica identity",
                "pass",
                "REPLICA IDENTITY FULL: deletes and updates carry the whole old row",
            )
        ]
    if not keys:
        what = "NOTHING" if mode == "n" else "DEFAULT without a primary key"
        return [
            Check(
                "replica identity",
                "fail",
                f"{relation.label} has REPLICA IDENTITY {what}: its deletes carry no old values, so "
                "profilesync cannot tell whose profile to remove. Set FULL (or add a primary key holding the user id)",
                full,
            )
        ]
    needed = user_id_columns(mapping)
    missing = sorted(needed - set(keys))
    identity = "REPLICA IDENTITY " + ("DEFAULT" if mode == "d" else "USING INDEX")
    described = f"{identity} ({'primary key ' if mode == 'd' else ''}{', '.join(keys)})"
    if missing:
        return [
            Check(
                "replica identity",
                "fail",
                f"{relation.label} has {described}: a delete (or an update that changes the user id) "
                f"carries only those old values, but user_id is read from {', '.join(missing)}. Set "
                "REPLICA IDENTITY FULL so that deletes carry the old user id (the WAL then holds whole old rows)",
                full,
            )
        ]
    checks = [Check("replica identity", "pass", f"{described}: deletes carry the user id")]
    texts = [
        c for c in _pick(relation.columns, mapping.columns, relation.label) if c.kind == "string"
    ]
    if texts:
        checks.append(
            Check(
                "large values",
                "info",
                f"an UPDATE does not send unchanged values over ~2 kB (TOAST) under {identity}; "
                f"if {', '.join(c.name for c in texts)} can hold such values, a sync stops and asks for "
                "REPLICA IDENTITY FULL",
                full,
            )
        )
    return checks


def _replica_identity(conn: psycopg.Connection[Any], relation: Relation) -> tuple[str, list[str]]:
    """``relreplident`` and the columns its old rows carry (primary key or chosen index)."""
    mode = str(_scalar(conn, "SELECT relreplident FROM pg_class WHERE oid = %s", [relation.oid]))
    flag = "indisprimary" if mode == "d" else "indisreplident"
    rows = conn.execute(
        f"""SELECT a.attname FROM pg_index i
            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
            WHERE i.indrelid = %s AND i.{flag} ORDER BY array_position(i.indkey, a.attnum)""",
        [relation.oid],
    ).fetchall()
    return mode, [r[0] for r in rows]


def _keep_size_check(server: dict[str, Any], frequency_seconds: int) -> Check:
    every = format_frequency(frequency_seconds)
    if server["keep_size"] in ("-1", "-1kB", "-1MB"):
        return Check(
            KEEP_SIZE,
            "info",
            f"{KEEP_SIZE} = -1: the server keeps WAL for the slot without limit. A paused or "
            "abandoned source makes pg_wal grow until `profilesync source delete` drops its slot",
        )
    return Check(
        KEEP_SIZE,
        "info",
        f"{KEEP_SIZE} = {server['keep_size']}: if the server writes more WAL than that between two "
        f"syncs (every {every}), it invalidates the slot and the source needs a resync",
    )


# -- decoding changes -----------------------------------------------------------------------


def _decode(
    raw: pa.Table, relation: Relation, mapping: Mapping, checkpoint: Checkpoint, source_name: str
) -> Changes:
    """wal2json rows -> mapped columns + ``_op``/``_ord``, all in DuckDB."""
    wanted = _pick(relation.columns, mapping.columns, relation.label)
    since = lsn_int(checkpoint.position)
    con = _duck()
    try:
        con.register("peeked", raw)
        _stage(con, wanted, since)
        position = _scalar_duck(con, f"SELECT coalesce(max(commit_lsn), {since}) FROM commits")
        _refuse_unreadable(con, wanted, relation, source_name)
        schema = pa.schema(
            [
                *(pa.field(c.name, c.arrow) for c in wanted),
                pa.field(OP, pa.string()),
                pa.field(ORD, pa.int64()),
            ]
        )
        table = con.execute(_rows_sql(wanted)).to_arrow_table()
    finally:
        con.close()
    new = Checkpoint(lsn_text(max(position, since)), checkpoint.identity, checkpoint.extra)
    return Changes(
        pa.RecordBatchReader.from_batches(schema, table.cast(schema).to_batches()), new, full=False
    )


def _stage(con: duckdb.DuckDBPyConnection, wanted: tuple[Column, ...], since: int) -> None:
    """One row per change of a transaction that committed after the checkpoint.

    For each mapped column ``i``: whether the new row (``np{i}``) and the old row
    (``op{i}``) hold it, and its text (``nv{i}``, ``ov{i}``). Transactions arrive in commit
    order; ``n`` is the position in that stream.
    """
    positions, values = [], []
    for i, c in enumerate(wanted):
        name = c.name.replace("'", "''")
        for side, key in (("n", "cols"), ("o", "ids")):
            positions.append(f"list_position({side}_names, '{name}') AS {side}x{i}")
            values.append(
                f"{side}x{i} IS NOT NULL AS {side}p{i}, {key}[{side}x{i}].value->>'$' AS {side}v{i}"
            )
    con.execute(f"""
        CREATE TEMP TABLE commits AS SELECT xid, max(lsn) AS commit_lsn FROM peeked
        WHERE data = '{_COMMIT}' GROUP BY xid;
        CREATE TEMP TABLE changes AS SELECT n, action, {", ".join(values)} FROM (
            SELECT *, {", ".join(positions)} FROM (
                SELECT n, s.action AS action, s.columns AS cols, s.identity AS ids,
                       list_transform(s.columns, x -> x.name) AS n_names,
                       list_transform(s.identity, x -> x.name) AS o_names
                FROM (SELECT p.n, json_transform(p.data, '{_CHANGE_JSON}') AS s FROM peeked p
                      JOIN commits c ON c.xid = p.xid
                      WHERE c.commit_lsn > {since} AND p.data <> '{_COMMIT}')))
        WHERE action IN ('I', 'U', 'D', 'T')""")


def _refuse_unreadable(
    con: duckdb.DuckDBPyConnection, wanted: tuple[Column, ...], relation: Relation, source_name: str
) -> None:
    """A TRUNCATE, or an update whose unchanged large (TOASTed) value was not sent."""
    if _scalar_duck(con, "SELECT count(*) FROM changes WHERE action = 'T'"):
        raise TableReplacedError(
            f"table {relation.label} was truncated (as a full refresh does). Nothing was applied. "
            f"Run `profilesync sync {source_name} --resync` to diff the table against the store."
        )
    unsent = " OR ".join(f"NOT (np{i} OR op{i})" for i in range(len(wanted)))
    if _scalar_duck(con, f"SELECT count(*) FROM changes WHERE action = 'U' AND ({unsent})"):
        raise ChangeTrackingError(
            f"an UPDATE of {relation.label} left a large (TOASTed, over ~2 kB) mapped value unchanged, "
            "and Postgres does not send such values in the change stream. Nothing was applied. Run "
            f"ALTER TABLE {relation.qualified} REPLICA IDENTITY FULL; then "
            f"`profilesync sync {source_name} --resync`."
        )


def _rows_sql(wanted: tuple[Column, ...]) -> str:
    """Upserts (the new row, old values filling unsent ones) and deletes (the old row).

    An update emits a delete of its old row only when a mapped value in the old row
    differs (e.g. the user id changed); the delete sorts before the upsert.
    """
    new = ", ".join(
        f"{c.cast(f'CASE WHEN np{i} THEN nv{i} ELSE ov{i} END')} AS {quote(c.name)}"
        for i, c in enumerate(wanted)
    )
    old = ", ".join(f"{c.cast(f'ov{i}')} AS {quote(c.name)}" for i, c in enumerate(wanted))
    moved = " OR ".join(
        f"(op{i} AND np{i} AND ov{i} IS DISTINCT FROM nv{i})" for i in range(len(wanted))
    )
    return f"""
        SELECT {new}, '{UPSERT}' AS {OP}, n * 2 + 1 AS {ORD} FROM changes WHERE action IN ('I', 'U')
        UNION ALL
        SELECT {old}, '{DELETE}', n * 2 FROM changes
        WHERE action = 'D' OR (action = 'U' AND ({moved}))"""


# -- reading COPY output ------------------------------------------------------------------


def _pick(columns: tuple[Column, ...], names: tuple[str, ...], where: str) -> tuple[Column, ...]:
    by_name = {c.name: c for c in columns}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise NotFoundError(
            f"{where} has no column(s) {', '.join(missing)} (it has: {', '.join(by_name)})"
        )
    return tuple(by_name[n] for n in names)


class _CopyStream(io.RawIOBase):
    """COPY ... TO STDOUT data as a file, handed over many rows at a time."""

    def __init__(self, chunks: Iterator[Any]) -> None:
        self._chunks = chunks
        self._left = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self._left:
            self._left = memoryview(b"".join(itertools.islice(self._chunks, 8192)))
        size = min(len(buffer), len(self._left))
        buffer[:size] = self._left[:size]
        self._left = self._left[size:]
        return size


def _copy_csv(
    conn: psycopg.Connection[Any],
    select: str,
    width: int,
    params: list[Any] | None = None,
    names: list[str] | None = None,
    types: list[pa.DataType] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Stream ``select`` as CSV through Arrow's parser (text columns unless ``types``)."""
    names = names or [f"c{i}" for i in range(width)]
    types = types or [pa.string()] * width
    with conn.cursor().copy(f"COPY ({select}) TO STDOUT (FORMAT csv)", params) as copy:
        stream = io.BufferedReader(_CopyStream(iter(copy)), 1 << 22)
        if not stream.peek(1):
            return
        yield from pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(column_names=names, block_size=1 << 22),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types=dict(zip(names, types, strict=True)),
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,  # "" is an empty string, nothing is NULL
                null_values=[""],
            ),
        )


def _typed(
    batches: Iterator[pa.RecordBatch], columns: tuple[Column, ...], schema: pa.Schema
) -> Iterator[pa.RecordBatch]:
    """Postgres text -> typed Arrow, by the same casts the change stream uses."""
    con = _duck()
    select = ", ".join(f"{c.cast(f'c{i}')} AS {quote(c.name)}" for i, c in enumerate(columns))
    try:
        for batch in batches:
            con.register("text_batch", batch)
            yield from (
                con.execute(f"SELECT {select} FROM text_batch")
                .to_arrow_table()
                .cast(schema)
                .to_batches()
            )
            con.unregister("text_batch")
    finally:
        con.close()


def _commit_after(
    conn: psycopg.Connection[Any], batches: Iterator[pa.RecordBatch]
) -> Iterator[pa.RecordBatch]:
    try:
        with _errors():
            yield from batches
            conn.execute("COMMIT")
    finally:
        conn.close()


# -- helpers ------------------------------------------------------------------------------


@functools.cache
def _duck_database() -> duckdb.DuckDBPyConnection:
    """Types the rows Postgres sent; no file is any business of it, so none is in reach."""
    from profilesync.sandbox import lock_down

    con = duckdb.connect()
    lock_down(con)
    return con


def _duck() -> duckdb.DuckDBPyConnection:
    """A session of one in-memory DuckDB per process: opening a database costs ~40 ms, a
    session ~1 ms. Temporary tables and registered batches stay private to the session."""
    return _duck_database().cursor()


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise MissingDependencyError("psycopg", "postgres") from None
    return psycopg


@contextmanager
def _errors() -> Iterator[None]:
    """Driver errors as the error a user can act on."""
    psycopg = _psycopg()
    try:
        yield
    except ProfilesyncError:
        raise
    except psycopg.errors.InsufficientPrivilege as exc:
        raise ConfigurationError(
            f"PostgreSQL refused: {_first_line(exc)}. `profilesync source test NAME` lists the "
            "privileges a source needs and the GRANT to run"
        ) from None
    except psycopg.errors.ObjectInUse as exc:
        raise ConcurrentSyncError(
            f"PostgreSQL: {_first_line(exc)}: another sync of this source is running; try again later"
        ) from None
    except psycopg.Error as exc:
        # connection loss, shutdown or exhausted resources may pass; the rest is a setup issue
        if (exc.sqlstate or "08")[:2] in ("08", "53", "57"):
            raise WarehouseUnavailableError(
                f"PostgreSQL did not answer: {_first_line(exc)}. Try again when the server is reachable"
            ) from None
        raise ConfigurationError(
            f"PostgreSQL refused: {_first_line(exc)}. `profilesync source test NAME` checks "
            "what a source needs (wal_level, wal2json, privileges, replica identity)"
        ) from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _scalar(conn: psycopg.Connection[Any], sql: str, params: list[Any] | None = None) -> Any:
    row = conn.execute(sql, params).fetchone()
    return row[0] if row else None


def _scalar_duck(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def user_id_columns(mapping: Mapping) -> set[str]:
    """The table columns the ``user_id`` expression reads."""
    parsed = sqlglot.parse_one(mapping.user_id, read="duckdb")
    return {c.name for c in parsed.find_all(exp.Column)}
