"""The replication slot a CDC source owns: create (exporting a snapshot), peek, advance, drop.

Every CDC source owns one logical replication slot, ``profilesync_<source>``, with the
``wal2json`` output plugin. It is *peeked*, never consumed, so a crash before the store
commits loses nothing; at the start of the next sync it is advanced to the committed
checkpoint, never past it. An abandoned slot keeps every WAL segment written after it on
the server's disk, so deleting the source drops it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from profilesync.errors import (
    ConcurrentSyncError,
    ConfigurationError,
    RetentionExceededError,
    resync_fixes,
)
from profilesync.model import Checkpoint
from profilesync.warehouses.postgres.catalog import Relation
from profilesync.warehouses.postgres.driver import first_line, psycopg_module, stage
from profilesync.warehouses.postgres.snapshot import copy_csv

if TYPE_CHECKING:
    import duckdb
    import psycopg

PLUGIN = "wal2json"
SLOT_PREFIX = "profilesync_"
KEEP_SIZE = "max_slot_wal_keep_size"

#: what creating a throw-away slot showed about the output plugin: it loads, the server
#: did not answer in time, or loading failed (with the server's message)
PluginProbe = tuple[Literal["loads", "timeout", "error"], str]


def slot_name(source_name: str) -> str:
    """``profilesync_<source>``; names that are not plain lower-case identifiers get a hash."""
    clean = re.sub(r"[^a-z0-9_]", "_", source_name.lower())
    if clean == source_name and len(SLOT_PREFIX) + len(clean) <= 63:
        return SLOT_PREFIX + clean
    digest = hashlib.sha1(source_name.encode()).hexdigest()[:8]
    return f"{SLOT_PREFIX}{clean[:40]}_{digest}"


def lsn_int(text: str) -> int:
    """``'16/B374D848'`` -> its byte position."""
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


def lsn_text(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def escape_filter(name: str) -> str:
    """wal2json's ``add-tables`` splits on ``,`` and ``.``, treats ``*`` as a wildcard."""
    return re.sub(r"([\\,.* ])", r"\\\1", name)


@dataclass(frozen=True)
class Slot:
    """The slot named ``name`` of the source ``source_name`` (named in error messages)."""

    name: str
    source_name: str

    def create(self, replication: psycopg.Connection[Any]) -> tuple[str, str]:
        version = replication.info.server_version
        export = "(SNAPSHOT 'export')" if version >= 150000 else "EXPORT_SNAPSHOT"
        row = replication.execute(
            f"CREATE_REPLICATION_SLOT {self.name} LOGICAL {PLUGIN} {export}"
        ).fetchone()
        assert row is not None
        return str(row[1]), str(row[2])  # consistent_point, snapshot_name

    def state(self, conn: psycopg.Connection[Any]) -> dict[str, Any] | None:
        """The slot's row of ``pg_replication_slots`` (None when it does not exist)."""
        cur = conn.execute(
            """SELECT database, plugin, wal_status, active_pid, confirmed_flush_lsn::text AS confirmed,
                      restart_lsn::text AS restart, database = current_database() AS ours
               FROM pg_replication_slots WHERE slot_name = %s""",
            [self.name],
        )
        row = cur.fetchone()
        return dict(zip([d.name for d in cur.description or []], row, strict=True)) if row else None

    def advance(self, conn: psycopg.Connection[Any], checkpoint: Checkpoint) -> None:
        """Release what the store has committed: the slot moves to the checkpoint, not past it."""
        state = self.usable(conn)
        confirmed, target = lsn_int(state["confirmed"]), lsn_int(checkpoint.position)
        if confirmed > target:
            raise self.lost(
                f"replication slot {self.name} was advanced to {state['confirmed']}, past this "
                f"source's checkpoint {checkpoint.position} (by another client, by a resync that did "
                "not finish, or the store was restored from a backup): the changes in between are gone"
            )
        if confirmed < target:
            conn.execute(
                "SELECT pg_replication_slot_advance(%s, %s::pg_lsn)",
                [self.name, checkpoint.position],
            )

    def usable(self, conn: psycopg.Connection[Any]) -> dict[str, Any]:
        state = self.state(conn)
        if state is None:
            raise self.lost(f"replication slot {self.name} does not exist (it was dropped)")
        if not state["ours"]:
            raise ConfigurationError(self.foreign_message(state["database"]))
        if state["wal_status"] == "lost" or state["restart"] is None:
            raise self.lost(
                f"replication slot {self.name} was invalidated by the server (wal_status = 'lost'): "
                f"it fell behind by more than {KEEP_SIZE}"
            )
        if state["active_pid"] is not None:
            raise self.busy(state["active_pid"])
        return state

    def busy(self, pid: int) -> ConcurrentSyncError:
        return ConcurrentSyncError(
            f"replication slot {self.name} is in use by server process {pid}: another sync of "
            "this source is reading it; try again when it finishes"
        )

    def foreign_message(self, database: str) -> str:
        return (
            f"replication slot {self.name} belongs to database {database!r}; slot names are "
            "shared by the whole server. Name this source differently (slots are named "
            "profilesync_<source>)."
        )

    def lost(self, why: str) -> RetentionExceededError:
        return RetentionExceededError(
            f"{why}. Nothing was applied. Raise {KEEP_SIZE} on the server (or sync more often), and "
            f"run `profilesync sync {self.source_name} --resync` to re-create the slot and diff the "
            "table against the store.",
            **resync_fixes(self.source_name),
        )

    def peek(
        self, conn: psycopg.Connection[Any], relation: Relation, into: duckdb.DuckDBPyConnection
    ) -> None:
        """Every decoded change since the slot's position, without consuming it, as table
        ``peeked`` of ``into`` (``n``, ``lsn``, ``data``): streamed from COPY, so a
        window larger than the engine's memory limit spills to its disk."""
        sql = """SELECT n, (lsn - '0/0'::pg_lsn)::int8, data
                  FROM pg_logical_slot_peek_changes(%s, NULL, NULL, 'format-version', '2',
                       'include-types', 'false', 'add-tables', %s) WITH ORDINALITY AS p(lsn, xid, data, n)
                  WHERE data <> '{"action":"B"}'"""
        filter_ = f"{escape_filter(relation.schema)}.{escape_filter(relation.name)}"
        names = ["n", "lsn", "data"]
        types = [pa.int64(), pa.int64(), pa.string()]
        batches = copy_csv(conn, sql, 3, [self.name, filter_], names, types)
        stage(into, "peeked", pa.schema(list(zip(names, types, strict=True))), batches)

    def drop(self, conn: psycopg.Connection[Any]) -> None:
        state = self.state(conn)
        if state is None:
            return
        if not state["ours"]:
            raise ConfigurationError(self.foreign_message(state["database"]))
        if state["active_pid"] is not None:
            raise self.busy(state["active_pid"])
        conn.execute("SELECT pg_drop_replication_slot(%s)", [self.name])


def probe_plugin(conn: psycopg.Connection[Any]) -> PluginProbe:
    """Create and drop a temporary slot: the only way to know the plugin loads."""
    name = f"{SLOT_PREFIX}check_{conn.info.backend_pid}"
    psycopg = psycopg_module()
    try:
        conn.execute("SET statement_timeout = '10s'")
        conn.execute("SELECT pg_create_logical_replication_slot(%s, %s, true)", [name, PLUGIN])
        conn.execute("SELECT pg_drop_replication_slot(%s)", [name])
    except psycopg.errors.QueryCanceled:
        return "timeout", ""
    except psycopg.Error as exc:
        return "error", first_line(exc)
    finally:
        conn.execute("RESET statement_timeout")
    return "loads", ""
