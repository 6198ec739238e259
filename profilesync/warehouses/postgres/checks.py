"""Test mapping for Postgres: one inspection of the server, then pure rules.

:func:`inspect` does all the I/O "Test mapping" needs in one session: the relation, the
server's settings and the user's privileges, whether a replication connection is accepted,
the slot's state, a probe of the output plugin (a temporary slot, created and dropped at
most once per inspection) and the table's replica identity. :func:`judge` turns that
:class:`PostgresInspection` into checks without touching the server, so a page can judge
one inspection for several frequencies or strategies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from profilesync.errors import WarehouseUnavailableError
from profilesync.mapping import QUERY_TABLE, quote
from profilesync.model import Mapping, format_frequency
from profilesync.warehouses.postgres.catalog import (
    Relation,
    find_relation,
    pick,
    replica_identity,
    user_id_columns,
)
from profilesync.warehouses.postgres.driver import scalar
from profilesync.warehouses.postgres.slot import KEEP_SIZE, PLUGIN, PluginProbe, Slot, probe_plugin
from profilesync.warehouses.protocol import Check, Level

if TYPE_CHECKING:
    import psycopg

MIN_SERVER_VERSION = 130000  # pg_replication_slots.wal_status

QUERY_CHECK = Check(
    "query",
    "info",
    "snapshot diff: the query runs in PostgreSQL as written at every sync, and only rows that "
    "differ from the store are applied; no replication slot is used",
)
DIFF_CHECK = Check(
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


@dataclass(frozen=True)
class PostgresInspection:
    """Everything the Postgres checks read, gathered by one :func:`inspect`.

    Fields a strategy or an earlier failure made unnecessary stay ``None``: a diff needs
    no slot, a server that cannot decode is not asked for a test slot.
    """

    mapping: Mapping
    relation: Relation | None = None  # None: the mapping is a query
    server: dict[str, Any] | None = None
    #: the source's slot, when the CDC part was inspected
    slot: Slot | None = None
    #: None when not tried, "" when accepted, else the refusal
    replication_refused: str | None = None
    slot_state: dict[str, Any] | None = None
    #: WAL the existing slot holds (pg_size_pretty), when it is usable
    slot_retained: str | None = None
    plugin: PluginProbe | None = None
    #: ``relreplident`` and the columns old rows carry
    identity: tuple[str, list[str]] | None = None


def inspect(
    conn: psycopg.Connection[Any],
    mapping: Mapping,
    strategy: str,
    slot_of: Callable[[], Slot],
    try_replication: Callable[[], None],
) -> PostgresInspection:
    """Read what :func:`judge` needs for ``strategy`` ("diff" reads only the table part).

    ``slot_of()`` names the source's slot (it refuses when the source has no name yet);
    ``try_replication()`` opens and closes a replication connection, raising
    WarehouseUnavailableError when the server refuses it. A query mapping needs no I/O.
    """
    if mapping.table == QUERY_TABLE:
        return PostgresInspection(mapping)
    relation = find_relation(conn, mapping.table)
    server = _server(conn, relation)
    base = PostgresInspection(mapping, relation, server)
    if strategy == "diff" or server["version"] < MIN_SERVER_VERSION or relation.kind != "r":
        return base
    refused = None
    if _decodable(server):
        try:
            try_replication()
            refused = ""
        except WarehouseUnavailableError as exc:
            refused = str(exc)
    slot = slot_of()
    state = slot.state(conn)
    retained = plugin = None
    if state is None and _decodable(server) and refused == "":
        plugin = probe_plugin(conn)
    elif state is not None and state["ours"] and _slot_alive(state):
        retained = scalar(
            conn, "SELECT pg_size_pretty(pg_current_wal_lsn() - %s::pg_lsn)", [state["restart"]]
        )
    return PostgresInspection(
        mapping,
        relation,
        server,
        slot,
        refused,
        state,
        retained,
        plugin,
        replica_identity(conn, relation),
    )


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


def _decodable(server: dict[str, Any]) -> bool:
    """wal_level and the role's privileges allow logical decoding."""
    return all(c.level == "pass" for c in (wal_level_check(server), replication_check(server)))


def _slot_alive(state: dict[str, Any]) -> bool:
    return state["wal_status"] != "lost" and state["restart"] is not None


# -- the rules: pure functions of an inspection ---------------------------------------------


def judge(inspection: PostgresInspection, frequency_seconds: int, strategy: str) -> list[Check]:
    """The checks "Test mapping" shows for ``inspection``."""
    relation, server = inspection.relation, inspection.server
    if relation is None or server is None:
        return [QUERY_CHECK]
    checks = [
        Check("table", "pass", f"{relation.label} (OID {relation.oid})"),
        select_check(relation, server),
    ]
    if strategy == "diff":
        return [*checks, DIFF_CHECK]
    return checks + cdc_checks(inspection, relation, server, frequency_seconds)


def cdc_checks(
    inspection: PostgresInspection,
    relation: Relation,
    server: dict[str, Any],
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
        return [relkind_check(relation)]
    checks = [wal_level_check(server), replication_check(server)]
    if inspection.replication_refused is not None:
        checks.append(replication_connection_check(inspection.replication_refused))
    checks.extend(slot_checks(inspection, server))
    assert inspection.identity is not None, "judge CDC from an inspection made for CDC"
    checks.extend(identity_checks(relation, inspection.mapping, *inspection.identity))
    checks.append(keep_size_check(server, frequency_seconds))
    return checks


def select_check(relation: Relation, server: dict[str, Any]) -> Check:
    user = quote(server["user"])
    if server["can_select"] and server["can_use_schema"]:
        return Check("privileges", "pass", f"{server['user']} may read {relation.label}")
    return Check(
        "privileges",
        "fail",
        f"{server['user']} may not read {relation.label}",
        f"GRANT USAGE ON SCHEMA {quote(relation.schema)} TO {user}; GRANT SELECT ON {relation.qualified} TO {user};",
    )


def relkind_check(relation: Relation) -> Check:
    return Check(
        "change data capture",
        "fail",
        f"{relation.label} is {_RELKINDS.get(relation.kind, 'not a plain table')}: logical decoding "
        "reports changes of plain tables only (a partitioned table's under each partition's name). "
        "Use --strategy diff, or point the source at the underlying table",
    )


def wal_level_check(server: dict[str, Any]) -> Check:
    if server["wal_level"] == "logical":
        return Check("wal_level", "pass", "wal_level = logical")
    return Check(
        "wal_level",
        "fail",
        f"wal_level = {server['wal_level']}: logical decoding needs wal_level = logical "
        "(a server restart applies it; on managed services set the parameter group's logical replication flag)",
        "ALTER SYSTEM SET wal_level = logical; -- then restart PostgreSQL",
    )


def replication_check(server: dict[str, Any]) -> Check:
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


def replication_connection_check(refused: str) -> Check:
    if refused:
        return Check(
            "replication connection",
            "fail",
            f"a replication connection (replication=database), which creates the slot, was refused: {refused}. "
            "Allow it in pg_hba.conf (the same line as normal connections to this database) and check max_wal_senders",
        )
    return Check("replication connection", "pass", "replication=database connections are accepted")


def slot_checks(inspection: PostgresInspection, server: dict[str, Any]) -> list[Check]:
    slot, state = inspection.slot, inspection.slot_state
    assert slot is not None, "judge CDC from an inspection made for CDC"
    if state is None:
        probe = [] if inspection.plugin is None else [plugin_check(inspection.plugin)]
        return [missing_slot_check(slot, server), *probe]
    if not state["ours"]:
        return [Check("replication slot", "fail", slot.foreign_message(state["database"]))]
    if not _slot_alive(state):
        return [
            Check(
                "replication slot",
                "warn",
                f"{slot.name} was invalidated (wal_status = 'lost', see {KEEP_SIZE}): syncs "
                f"fail until `profilesync sync {slot.source_name} --resync` re-creates it "
                "(a first sync re-creates it too)",
            )
        ]
    level: Level = "warn" if state["wal_status"] == "unreserved" else "pass"
    return [
        Check(
            "replication slot",
            level,
            f"{slot.name} ({state['plugin']}) holds {inspection.slot_retained} of WAL since {state['restart']}; wal_status = {state['wal_status']}",
        )
    ]


def missing_slot_check(slot: Slot, server: dict[str, Any]) -> Check:
    if server["slots_used"] >= server["max_slots"]:
        return Check(
            "replication slot",
            "fail",
            f"all {server['max_slots']} replication slots of the server are in use: the first sync could not create {slot.name}",
            f"ALTER SYSTEM SET max_replication_slots = {server['max_slots'] + 10}; -- then restart PostgreSQL",
        )
    return Check(
        "replication slot",
        "info",
        f"{slot.name} does not exist yet: the first sync creates it (with {PLUGIN}) and reads a consistent snapshot. "
        "If this source has synced before, its slot was dropped and a resync is needed",
    )


def plugin_check(probe: PluginProbe) -> Check:
    outcome, detail = probe
    if outcome == "timeout":
        return Check(
            PLUGIN,
            "warn",
            f"could not create a test slot within 10 s (long-running transactions delay it); {PLUGIN} not verified",
        )
    if outcome == "error":
        return Check(
            PLUGIN,
            "fail",
            f"the {PLUGIN} output plugin could not be loaded: {detail}. Install it on the server "
            "(Debian/Ubuntu: apt install postgresql-<version>-wal2json; Amazon RDS, Aurora, Cloud SQL and Azure ship it)",
        )
    return Check(PLUGIN, "pass", f"the {PLUGIN} output plugin loads")


def identity_checks(
    relation: Relation, mapping: Mapping, mode: str, keys: list[str]
) -> list[Check]:
    """Deletes carry only the replica identity's old values: user_id must be among them."""
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
    missing = sorted(user_id_columns(mapping) - set(keys))
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
        c for c in pick(relation.columns, mapping.columns, relation.label) if c.kind == "string"
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


def keep_size_check(server: dict[str, Any], frequency_seconds: int) -> Check:
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
