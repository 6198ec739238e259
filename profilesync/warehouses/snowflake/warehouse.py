"""Snowflake tables, read with ``snowflake-connector-python`` (extra ``snowflake``).

Change capture uses the ``CHANGES`` clause on tables with ``CHANGE_TRACKING = TRUE``::

    SELECT <columns>, METADATA$ACTION, METADATA$ISUPDATE
    FROM db.schema.t CHANGES(INFORMATION => DEFAULT)
    AT(TIMESTAMP => '<checkpoint>'::TIMESTAMP_TZ) END(TIMESTAMP => '<now>'::TIMESTAMP_TZ)

``INFORMATION => DEFAULT`` returns the net change of each row between the two points:
``INSERT`` rows are current rows (new, or the post-image of an update), ``DELETE`` rows
are gone (deleted, or the pre-image of an update, flagged by ``METADATA$ISUPDATE``).
Every delete sorts before every insert, so a key whose row was replaced ends as its
insert. The checkpoint is the END timestamp, read from ``CURRENT_TIMESTAMP()`` before the
data; the first sync reads the table ``AT`` that same timestamp, so snapshot and stream
meet exactly. The table's identity is its ``created_on`` from ``SHOW TABLES``: a
``CREATE OR REPLACE`` (a dbt full refresh) gives the table a new one.

Unquoted Snowflake identifiers are stored in upper case; mappings name such columns in
lower case (``user_id`` for ``USER_ID``), as people write them in SQL.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from profilesync.errors import (
    ChangeTrackingError,
    ConfigurationError,
    MissingDependencyError,
    NotFoundError,
    ProfilesyncError,
    RetentionExceededError,
    UiFix,
)
from profilesync.mapping import QUERY_TABLE
from profilesync.model import Checkpoint, Mapping, format_frequency
from profilesync.warehouses.protocol import (
    DELETE,
    UPSERT,
    Changes,
    Check,
    change_schema,
    empty_reader,
)
from profilesync.warehouses.rules import DAY, expired_error, replaced_error, time_travel_check
from profilesync.warehouses.snowflake.spec import SPEC
from profilesync.warehouses.spec import ConfigSpec
from profilesync.warehouses.sqlwarehouse import (
    QUERY_NOTE,
    TIMESTAMP,
    SQLWarehouse,
    conform,
    limit_sql,
    present,
    string_literal,
    utc,
)

ACTION = "METADATA$ACTION"
IS_UPDATE = "METADATA$ISUPDATE"
#: Snowflake's answer when AT/BEFORE/CHANGES points outside the retained history
_TIME_TRAVEL = "time travel data is not available"
#: ... and when change tracking was off for part of the requested interval
_NOT_TRACKED = "change tracking is not enabled or has been missing"
_NOT_FOUND = "does not exist or not authorized"
_UPPER_IDENTIFIER = re.compile(r"^[A-Z_][A-Z0-9_$]*$")
_TYPE = re.compile(r"^\s*([A-Z_ ]+?)\s*(?:\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\))?\s*(?:COLLATE.*)?$")


def connect(config: dict[str, Any]) -> Any:
    """A DB-API connection from the official connector (tests put a stand-in here)."""
    try:
        import snowflake.connector
    except ImportError:
        raise MissingDependencyError("snowflake-connector-python", "snowflake") from None
    params: dict[str, Any] = {
        key: config[key]
        for key in ("account", "user", "password", "warehouse", "role", "database", "schema")
        if config.get(key)
    }
    if config.get("private_key"):
        params["private_key"] = _der_private_key(
            config["private_key"], config.get("private_key_passphrase")
        )
        params["authenticator"] = "SNOWFLAKE_JWT"
    elif config.get("private_key_file"):
        params["private_key_file"] = config["private_key_file"]
        params["authenticator"] = "SNOWFLAKE_JWT"
        if config.get("private_key_passphrase"):
            params["private_key_file_pwd"] = config["private_key_passphrase"]
    # UTC sessions: CURRENT_TIMESTAMP() and TIMESTAMP_LTZ values come back in UTC;
    # decimals stay exact instead of turning into doubles.
    params["session_parameters"] = {"TIMEZONE": "UTC"}
    params["arrow_number_to_decimal"] = True
    return snowflake.connector.connect(**params)


def _der_private_key(pem: str, passphrase: str | None) -> bytes:
    """PKCS#8 DER bytes, the key form every connector release accepts."""
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_private_key(
            pem.encode(), password=passphrase.encode() if passphrase else None
        )
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(
            f"the Snowflake private_key is not a readable PEM key ({exc}): give the whole "
            "-----BEGIN PRIVATE KEY----- block, and private_key_passphrase if it is encrypted"
        ) from exc
    return key.private_bytes(
        encoding=serialization.Encoding.DER,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


def identifier(name: str) -> str:
    """Snowflake SQL for a stored identifier: bare when Snowflake would resolve it the same."""
    return name if _UPPER_IDENTIFIER.match(name) else '"' + name.replace('"', '""') + '"'


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def stored_name(text: str) -> str:
    """How Snowflake stores an identifier as written: unquoted upper-cased, quoted as is."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1].replace('""', '"')
    return text.upper()


def timestamp_sql(value: datetime) -> str:
    """A timestamp literal with its UTC offset: a plain TIMESTAMP cast would use the session zone."""
    return f"{string_literal(utc(value).isoformat())}::TIMESTAMP_TZ"


def arrow_type(snowflake_type: str) -> pa.DataType:
    """``DESCRIBE TABLE`` type text -> the Arrow type profilesync reads the column as."""
    match = _TYPE.match(snowflake_type.upper())
    base = match.group(1).strip() if match else snowflake_type.upper()
    if base in ("NUMBER", "DECIMAL", "NUMERIC"):
        precision = int(match.group(2) or 38) if match else 38
        scale = int(match.group(3) or 0) if match else 0
        return pa.int64() if scale == 0 else pa.decimal128(precision, scale)
    if base in ("INT", "INTEGER", "BIGINT", "SMALLINT", "TINYINT", "BYTEINT"):
        return pa.int64()
    if base in ("FLOAT", "FLOAT4", "FLOAT8", "DOUBLE", "DOUBLE PRECISION", "REAL"):
        return pa.float64()
    if base == "BOOLEAN":
        return pa.bool_()
    if base == "DATE":
        return pa.date32()
    if base.startswith(("TIMESTAMP", "DATETIME")):
        return TIMESTAMP
    if base == "TIME":
        return pa.time64("us")
    if base in ("BINARY", "VARBINARY"):
        return pa.binary()
    # VARCHAR and friends; VARIANT, OBJECT, ARRAY and GEOGRAPHY arrive as JSON text
    return pa.string()


#: cursor.description type codes (the connector's FIXED, REAL, TEXT, ...) -> Arrow
_TYPE_CODES: dict[int, pa.DataType] = {
    1: pa.float64(),
    3: pa.date32(),
    4: TIMESTAMP,
    6: TIMESTAMP,
    7: TIMESTAMP,
    8: TIMESTAMP,
    11: pa.binary(),
    12: pa.time64("us"),
    13: pa.bool_(),
}


def description_type(column: Any) -> pa.DataType:
    """An Arrow type for a result column from ``cursor.description`` (name, type_code, ...)."""
    code = column[1]
    if code == 0:  # FIXED: precision and scale are items 4 and 5
        scale = column[5] or 0
        return pa.int64() if scale == 0 else pa.decimal128(column[4] or 38, scale)
    return _TYPE_CODES.get(code, pa.string())


@dataclass(frozen=True)
class TableRef:
    """A table as Snowflake stores its name, and the SQL that names it."""

    database: str
    schema: str
    name: str

    @property
    def sql(self) -> str:
        return ".".join(identifier(p) for p in (self.database, self.schema, self.name))

    @property
    def schema_sql(self) -> str:
        return f"{identifier(self.database)}.{identifier(self.schema)}"


@dataclass(frozen=True)
class TableInfo:
    """What ``SHOW TABLES`` says about one table."""

    created_on: datetime
    change_tracking: bool
    retention_days: int
    kind: str

    @property
    def identity(self) -> str:
        return utc(self.created_on).isoformat()


class SnowflakeWarehouse(SQLWarehouse[TableRef]):
    kind: ClassVar[str] = "snowflake"
    dialect: ClassVar[str] = "snowflake"
    warehouse: ClassVar[str] = "Snowflake"
    spec: ClassVar[ConfigSpec] = SPEC

    # -- plumbing -----------------------------------------------------------------
    def _connect(self) -> Any:
        return connect(self.config)

    def _known_error(self, text: str, where: str) -> ProfilesyncError | None:
        lowered = text.lower()
        if _TIME_TRAVEL in lowered or _NOT_TRACKED in lowered:
            return self._expired(where, f"Snowflake answered: {text}")
        if _NOT_FOUND in lowered:
            return NotFoundError(
                f"Snowflake answered: {text}. Check the table name and that the connection's "
                "role has SELECT on it (and USAGE on its database and schema)"
            )
        return None

    def _arrow_tables(self, cursor: Any) -> Iterable[pa.Table]:
        return cursor.fetch_arrow_batches()

    def _result_type(self, column: Any) -> pa.DataType:
        return description_type(column)

    def _quote(self, name: str) -> str:
        return quoted(name)

    def _now(self) -> datetime:
        row = self._run("SELECT CURRENT_TIMESTAMP()").fetchone()
        return utc(row[0])

    # -- discovery -------------------------------------------------------------------
    def _default_schema(self) -> str:
        return stored_name(self.config.get("schema") or "PUBLIC")

    def table_ref(self, table: str) -> TableRef:
        parsed = exp.to_table(table, dialect="snowflake")
        parts = [
            p.name if p.quoted else p.name.upper()
            for p in (parsed.args.get("catalog"), parsed.args.get("db"), parsed.this)
            if isinstance(p, exp.Identifier)
        ]
        database = stored_name(self.config["database"])
        if len(parts) == 3:
            return TableRef(*parts)
        if len(parts) == 2:
            return TableRef(database, parts[0], parts[1])
        return TableRef(database, self._default_schema(), parts[0])

    def list_tables(self) -> list[str]:
        database = identifier(stored_name(self.config["database"]))
        rows = self._rows(f"SHOW TABLES IN DATABASE {database}")
        return sorted(
            f"{identifier(r['schema_name'])}.{identifier(r['name'])}"
            for r in rows
            if r["schema_name"] != "INFORMATION_SCHEMA"
        )

    def _info(self, table: TableRef) -> TableInfo:
        like = string_literal(table.name)
        rows = self._rows(f"SHOW TABLES LIKE {like} IN SCHEMA {table.schema_sql}")
        # LIKE is a case-insensitive pattern ('_' matches any character): keep the exact name
        found = [r for r in rows if r["name"] == table.name]
        if not found:
            raise NotFoundError(
                f"Snowflake table {table.sql} not found (or the role cannot see it). "
                "For a view, use the query form with --strategy diff",
                ui_fix="Choose a table from the list, or write a query on the view (snapshot diff)",
            )
        row = found[0]
        return TableInfo(
            created_on=row["created_on"],
            change_tracking=str(row.get("change_tracking", "OFF")).upper() == "ON",
            retention_days=int(row.get("retention_time") or 0),
            kind=str(row.get("kind") or "TABLE"),
        )

    def _columns(self, table: TableRef) -> dict[str, pa.DataType]:
        """Stored column name -> Arrow type, in table order."""
        rows = self._rows(f"DESCRIBE TABLE {table.sql}")
        return {
            r["name"]: arrow_type(str(r["type"]))
            for r in rows
            if str(r.get("kind", "COLUMN")).upper() == "COLUMN"
        }

    def table_schema(self, table: str) -> pa.Schema:
        ref = self.table_ref(table)
        self._info(ref)
        return pa.schema([(present(n), t) for n, t in self._columns(ref).items()])

    # -- test mapping ----------------------------------------------------------------
    def _inspect_table(self, table: TableRef) -> TableInfo:
        return self._info(table)

    def _judge_table(
        self, table: TableRef, info: TableInfo, frequency_seconds: int
    ) -> tuple[Check, list[Check]]:
        found = Check(
            "table", "pass", f"Snowflake {info.kind.lower()} {table.sql}, created {info.identity}"
        )
        if info.change_tracking:
            tracking = Check("change tracking", "pass", f"CHANGE_TRACKING = TRUE on {table.sql}")
        else:
            tracking = Check(
                "change tracking",
                "fail",
                f"change tracking is off on {table.sql}: the CHANGES clause cannot read it. "
                "Enable it (or choose --strategy diff to re-read the table every sync).",
                f"ALTER TABLE {table.sql} SET CHANGE_TRACKING = TRUE;",
            )
        return found, [tracking, retention_check(table, info.retention_days, frequency_seconds)]

    # -- reading -----------------------------------------------------------------------
    def snapshot(self, mapping: Mapping, limit: int | None = None) -> Changes:
        now = self._now()
        if mapping.table == QUERY_TABLE:
            return self._query_snapshot(mapping, limit, utc(now).isoformat())
        table = self.table_ref(mapping.table)
        info = self._info(table)
        schema, select = self._projection(table, mapping)
        # AT the recorded timestamp, so the next CHANGES starts exactly where this read
        # ended; a table without Time Travel (retention 0) can only be read as it is.
        at = f" AT(TIMESTAMP => {timestamp_sql(now)})" if info.retention_days > 0 else ""
        sql = f"SELECT {select} FROM {table.sql}{at}{limit_sql(limit)}"
        reader = self._stream(sql, table, schema, lambda t: conform(t, schema))
        return Changes(reader, Checkpoint(utc(now).isoformat(), info.identity), full=True)

    def changes(self, mapping: Mapping, checkpoint: Checkpoint) -> Changes:
        if mapping.table == QUERY_TABLE:
            raise ConfigurationError(QUERY_NOTE)
        table = self.table_ref(mapping.table)
        info = self._info(table)
        if info.identity != checkpoint.identity:
            why = f"its created_on changed from {checkpoint.identity} to {info.identity}"
            raise replaced_error(table.sql, why, self.source_name)
        if not info.change_tracking:
            raise ChangeTrackingError(
                f"change tracking is off on {table.sql}: run `ALTER TABLE {table.sql} SET "
                f"CHANGE_TRACKING = TRUE;`, then `profilesync sync {self.source_name} --resync` "
                "(changes made while it was off were not recorded)",
                cli_fix=f"profilesync sync {self.source_name} --resync",
                ui_fix=UiFix(
                    f"Run ALTER TABLE {table.sql} SET CHANGE_TRACKING = TRUE; then Resync",
                    f"/sources/{self.source_name}#resync",
                ),
            )
        now = self._now()
        since = datetime.fromisoformat(checkpoint.position)
        age = (now - since).total_seconds()
        if age > info.retention_days * DAY:
            raise self._expired(
                table.sql,
                f"the checkpoint is {format_frequency(int(age))} old and "
                f"DATA_RETENTION_TIME_IN_DAYS = {info.retention_days}",
            )
        schema, select = self._projection(table, mapping)
        out = change_schema(schema)
        new = Checkpoint(utc(now).isoformat(), info.identity)
        if age <= 0:
            return Changes(empty_reader(out), new, full=False)
        sql = (
            f"SELECT {select}, {ACTION}, {IS_UPDATE} FROM {table.sql} "
            f"CHANGES(INFORMATION => DEFAULT) AT(TIMESTAMP => {timestamp_sql(since)}) "
            f"END(TIMESTAMP => {timestamp_sql(now)})"
        )
        reader = self._stream(sql, table, out, lambda t: change_ops(t, schema, out))
        return Changes(reader, new, full=False)

    def _expired(self, table: str, why: str) -> RetentionExceededError:
        remedy = (
            "Raise DATA_RETENTION_TIME_IN_DAYS above the sync frequency (`ALTER TABLE "
            f"{table} SET DATA_RETENTION_TIME_IN_DAYS = 7;`) or sync more often"
        )
        return expired_error(table, "since the last sync", why, remedy, self.source_name)


def change_ops(table: pa.Table, schema: pa.Schema, out: pa.Schema) -> pa.Table:
    """CHANGES rows -> ``_op``/``_ord``.

    ``INFORMATION => DEFAULT`` is a net diff between two table versions, so there is no
    commit order inside it: a DELETE row (deleted, or an update's pre-image with
    ``METADATA$ISUPDATE``) is gone at the END point and an INSERT row is there. Deletes
    get ``_ord`` 0 and inserts 1, so a key that lost one row and gained another ends as
    the insert, and a key changed by an update deletes only the old key.
    """
    action = pc.cast(table.column(ACTION), pa.string())
    upsert = pc.equal(action, "INSERT")
    op = pc.if_else(upsert, UPSERT, DELETE)
    order = pc.cast(upsert, pa.int64())
    data = conform(table, schema)
    return pa.Table.from_arrays([*data.columns, op, order], schema=out)


def retention_check(table: TableRef, days: int, frequency_seconds: int) -> Check:
    """The Time Travel rule of :mod:`profilesync.warehouses.rules` for a Snowflake table."""
    fix = (
        f"ALTER TABLE {table.sql} SET DATA_RETENTION_TIME_IN_DAYS = 7; "
        f"ALTER TABLE {table.sql} SET CHANGE_TRACKING = TRUE;"
    )
    setting = f"DATA_RETENTION_TIME_IN_DAYS = {days}"
    return time_travel_check(setting, table.sql, days, frequency_seconds, fix)


#: the name before warehouses got a folder each; kept for one release
SnowflakeSource = SnowflakeWarehouse
