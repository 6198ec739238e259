"""What the conformance suite needs from a warehouse to run the same scenarios on every source.

Each kind that runs here has a driver module ``tests/conformance/drivers/<kind>.py`` that
exposes ``make_driver(request: pytest.FixtureRequest, tmp_path: Path) -> Driver``. The
suite creates tables through the driver, adds a connection and source through the
profilesync library or CLI, changes the warehouse through the driver and compares the
exported profiles with what the warehouse holds.

Column types are logical: ``"string"``, ``"int"``, ``"float"``, ``"bool"``, ``"timestamp"``
(timestamps are timezone-aware UTC ``datetime`` values). Rows are dicts of Python values.
"""

from __future__ import annotations

from typing import Any, Protocol

Row = dict[str, Any]
Schema = dict[str, str]  # column -> logical type, in column order


class Driver(Protocol):
    #: connection kind, e.g. "delta"
    kind: str
    #: the strategy its sources use in the suite: "cdc" or "diff"
    strategy: str
    #: the query form (SELECT ... AS "user_id" ... WHERE ...) works under this driver's strategy
    supports_query: bool
    #: drop-and-replace is detected (False only where a diff source cannot tell and needs not)
    detects_replace: bool
    #: expire_history() can make a checkpoint older than the retained changes
    can_expire: bool

    def connection_config(self) -> dict[str, Any]:
        """Settings for ``Connection(name, kind, config)`` / ``connection add``."""
        ...

    def table_name(self, name: str) -> str:
        """How a source names table ``name`` (e.g. ``"main.users"`` or ``"public.users"``)."""
        ...

    def create_table(
        self, name: str, schema: Schema, rows: list[Row], *, change_tracking: bool = True
    ) -> None:
        """Create table ``name`` with ``rows``; change tracking on unless told otherwise."""
        ...

    def enable_change_tracking(self, name: str) -> None: ...

    def insert(self, name: str, rows: list[Row]) -> None: ...

    def update(self, name: str, key: str, key_value: Any, values: Row) -> None:
        """``UPDATE name SET values WHERE key = key_value`` (in one commit)."""
        ...

    def delete(self, name: str, key: str, key_value: Any) -> None: ...

    def replace_table(self, name: str, schema: Schema, rows: list[Row]) -> None:
        """Drop and re-create the table (as a dbt full refresh does), change tracking on."""
        ...

    def expire_history(self, name: str) -> None:
        """Make the changes since the last sync unavailable (vacuum, slot loss, snapshot expiry)."""
        ...

    def rows(self, name: str) -> list[Row]:
        """The table's current rows (the model the store must equal)."""
        ...

    def close(self) -> None: ...
