"""The one protocol every warehouse implements.

A warehouse reads a table as Arrow batches in one of two ways: a consistent ``snapshot`` at a
position, or the ``changes`` after a checkpoint. Each batch carries the table columns the
mapping reads plus two columns the sync engine needs:

* ``_op``: ``'upsert'`` (insert or update post-image) or ``'delete'`` (delete, or the
  pre-image of an update, which deletes the old key when the key itself changed);
* ``_ord``: an integer that orders changes by commit; within one commit, deletes sort
  before upserts so that a delete+insert of one key in one commit nets to the insert.

Capability flags are class attributes, so callers ask ``warehouse.supports_cdc`` rather
than comparing kinds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

import pyarrow as pa

from profilesync.model import Checkpoint, Mapping

OP = "_op"
ORD = "_ord"
UPSERT = "upsert"
DELETE = "delete"

Level = Literal["pass", "warn", "fail", "info"]


@dataclass(frozen=True)
class Check:
    """One line of "Test mapping": what was checked, how it went, and what to run if not."""

    name: str
    level: Level
    message: str
    fix_sql: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "level": self.level,
            "message": self.message,
            "fix_sql": self.fix_sql,
        }


@dataclass
class Changes:
    """Rows read from the warehouse and the checkpoint reached by reading them.

    ``full`` marks a complete snapshot: users in the store that are not in it are deletes.
    """

    reader: pa.RecordBatchReader
    checkpoint: Checkpoint
    full: bool
    notes: list[str] = field(default_factory=list)


class Warehouse(Protocol):
    """A warehouse table behind the verbs the engine and "Test mapping" need."""

    kind: ClassVar[str]
    #: sqlglot dialect users write queries in for this warehouse
    dialect: ClassVar[str]
    #: can read changes since a checkpoint (otherwise only ``diff`` works)
    supports_cdc: ClassVar[bool]
    #: can run a whole SQL query as written (``Mapping.table == QUERY_TABLE``, diff only);
    #: sources without SQL declare it False
    supports_query: ClassVar[bool]
    #: keeps something on the warehouse's server per source (a replication slot) that
    #: ``release`` must free when the source is deleted
    holds_server_resources: ClassVar[bool]
    #: connection config keys that are secrets (write-only, encrypted at rest)
    secret_fields: ClassVar[tuple[str, ...]]

    def list_tables(self) -> list[str]:
        """Tables a source can read, named ``schema.table``."""
        ...

    def table_schema(self, table: str) -> pa.Schema:
        """Column names and Arrow types; raises NotFoundError for an unknown table."""
        ...

    def inspect(self, mapping: Mapping, strategy: str = "cdc") -> Any:
        """Everything the checks of ``mapping`` need, read from the warehouse once.

        The result is the kind's own frozen value (``PostgresInspection``,
        ``FeedInspection``, ...); an inspection made for "cdc" can be judged for either
        strategy, one made for "diff" only for "diff".
        """
        ...

    def judge(self, inspection: Any, frequency_seconds: int, strategy: str) -> list[Check]:
        """The checks for an inspection: pure rules, no I/O."""
        ...

    def check(self, mapping: Mapping, frequency_seconds: int, strategy: str) -> list[Check]:
        """Change tracking, retention and privilege checks for "Test mapping":
        ``judge(inspect(mapping, strategy), frequency_seconds, strategy)``."""
        ...

    def snapshot(self, mapping: Mapping, limit: int | None = None) -> Changes:
        """A consistent snapshot of the mapped columns and the position it was read at."""
        ...

    def changes(self, mapping: Mapping, checkpoint: Checkpoint) -> Changes:
        """Every change after ``checkpoint``; raises NeedsResyncError when that is impossible."""
        ...

    def release(self, mapping: Mapping) -> None:
        """Free warehouse-side resources the source holds (a replication slot) on delete."""
        ...

    def close(self) -> None: ...


#: the name the protocol had before warehouses got a folder each; kept for one release
WarehouseSource = Warehouse


def empty_reader(schema: pa.Schema) -> pa.RecordBatchReader:
    return pa.RecordBatchReader.from_batches(schema, [])


def change_schema(columns: pa.Schema) -> pa.Schema:
    """The schema of ``changes`` batches: the mapped columns, then ``_op`` and ``_ord``."""
    return pa.schema([*columns, pa.field(OP, pa.string()), pa.field(ORD, pa.int64())])
