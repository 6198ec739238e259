"""A source's ClickHouse tables, its committed version, and settling what a crash left.

Per source (``profiles_<id>``): the table of committed rows, the view readers see
(``_current``), and while a sync runs its ``_pending`` rows and its staging tables.
"""

from __future__ import annotations

import re
from typing import Any

import duckdb

from profilesync.model import Source
from profilesync.store.clickhouse.cluster import Layout
from profilesync.store.clickhouse.driver import Driver
from profilesync.store.clickhouse.schema import OWN, literal
from profilesync.store.duckdb.catalog import CatalogTables

#: the catalog setting of a source's committed version
VERSION_KEY = "clickhouse_version_{}"
#: suffixes of a sync's scratch tables (dropped after it, and after a crash)
SCRATCH = ("_stage", "_plan", "_repeats")
_OURS = re.compile(r"profiles_(\d+)(_\w+)?")


class Tables(CatalogTables):
    """The catalog (DuckDB, ``con``) and the ClickHouse tables of the sources (``driver``)."""

    driver: Driver
    layout: Layout

    # -- names -----------------------------------------------------------------------
    @staticmethod
    def view_name(source: Source) -> str:
        return f"{source.profile_table}_current"

    @staticmethod
    def pending_name(source: Source) -> str:
        return f"{source.profile_table}_pending"

    # -- the committed version ---------------------------------------------------------
    def committed(self, source: Source, con: duckdb.DuckDBPyConnection | None = None) -> int:
        row = (
            (con or self.con)
            .execute("SELECT value FROM settings WHERE key = ?", [VERSION_KEY.format(source.id)])
            .fetchone()
        )
        return int(row[0]) if row and row[0] else 0

    @staticmethod
    def set_committed(con: duckdb.DuckDBPyConnection, source: Source, version: int) -> None:
        key = VERSION_KEY.format(source.id)
        con.execute("DELETE FROM settings WHERE key = ?", [key])
        con.execute("INSERT INTO settings VALUES (?, ?)", [key, str(version)])

    # -- ClickHouse helpers ------------------------------------------------------------
    def run(self, statements: list[str], params: dict[str, Any] | None = None) -> None:
        """Statements of :attr:`layout`, in order."""
        for statement in statements:
            self.driver.execute(statement, params)

    def scalar(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        table = self.driver.query_arrow(sql, params)
        return table.column(0)[0].as_py() if table.num_rows else None

    def tables(self) -> set[str]:
        names = self.driver.query_arrow(
            "SELECT name FROM system.tables WHERE database = currentDatabase()"
        )
        return set(names.column("name").to_pylist()) if names.num_columns else set()

    def columns(self, tables: list[str]) -> dict[str, dict[str, str]]:
        """Property columns of ``tables`` with their DuckDB type names, in column order."""
        if not tables:
            return {}
        listed = ", ".join(literal(t) for t in tables)
        rows = self.driver.query_arrow(
            "SELECT table, name, comment FROM system.columns WHERE database = currentDatabase() "
            f"AND table IN ({listed}) ORDER BY table, position"
        )
        found: dict[str, dict[str, str]] = {t: {} for t in tables}
        for table, name, comment in zip(
            *(rows.column(i).to_pylist() for i in range(3)), strict=True
        ):
            if name not in OWN:
                found[table][name] = comment
        return found

    def refresh_view(self, source: Source) -> None:
        self.run(self.layout.current_view(self.view_name(source), source.profile_table))

    def drop(self, *tables: str) -> None:
        """Drop tables or views of the store (and their local tables on a cluster)."""
        for table in tables:
            self.run(self.layout.drop(table))

    def drop_scratch(self, *tables: str) -> None:
        """Drop a sync's scratch tables (kept on the node the store talks to)."""
        for table in tables:
            self.run(self.layout.drop_scratch(table))

    # -- settling ------------------------------------------------------------------------
    def settle(self, source: Source, present: set[str] | None = None) -> None:
        """Attach a pending version the catalog committed; drop one it did not, and any
        scratch table of an interrupted sync."""
        present = self.tables() if present is None else present
        pending = self.pending_name(source)
        if pending in present:
            top = self.scalar(f"SELECT max(_version) FROM {pending}")
            if top and top <= self.committed(source):
                self.run(self.layout.attach(source.profile_table, pending))
            self.drop(pending)
        scratch = [source.profile_table + s for s in SCRATCH]
        self.drop_scratch(*(name for name in scratch if name in present))
        if source.profile_table + "_convert" in present:  # a copy of the profile table
            self.drop(source.profile_table + "_convert")

    def settle_all(self) -> None:
        """Settle every source; drop the tables of sources deleted meanwhile."""
        present = self.tables()
        ids = {s.id: s for s in self.list_sources()}
        for source in ids.values():
            self.settle(source, present)
        left = {self.layout.logical(name) for name in present}
        for name in sorted(left, key=lambda n: not n.endswith("_current")):  # views first
            match = _OURS.fullmatch(name)
            if match and int(match[1]) not in ids:
                self.drop(name)

    def delete_source(self, name: str) -> None:
        """Remove the source (in the catalog first) and its tables; history stays."""
        source = self.get_source(name)
        super().delete_source(name)
        self.drop(self.view_name(source), source.profile_table, self.pending_name(source))
        self.con.execute("DELETE FROM settings WHERE key = ?", [VERSION_KEY.format(source.id)])
