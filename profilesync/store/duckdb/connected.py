"""The catalog file's connection and its transactions, which every catalog part builds on."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import duckdb

from profilesync.store.home import store_error


class Connected:
    """The store's home, its DuckDB connection and transactions over it."""

    home: Path
    con: duckdb.DuckDBPyConnection

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """All or nothing; a commit the disk refuses is reported as the full disk it is."""
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield self.con
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        try:
            self.con.execute("COMMIT")
        except duckdb.Error as exc:
            self._rollback_quietly()
            raise store_error(exc, self.home) or exc from exc

    def _rollback_quietly(self) -> None:
        """After a failed COMMIT DuckDB may or may not still hold the transaction open."""
        with suppress(duckdb.Error):
            self.con.execute("ROLLBACK")

    def _exists(self, table: str, column: str, value: str) -> bool:
        return (
            self.con.execute(f"SELECT 1 FROM {table} WHERE {column} = ?", [value]).fetchone()
            is not None
        )
