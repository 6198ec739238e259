"""One thin seam between the ClickHouse store and the engine it talks to.

The store writes ClickHouse SQL and moves data as Arrow; a :class:`Driver` only carries
them: :meth:`~Driver.execute` a statement, :meth:`~Driver.query_arrow` a result,
:meth:`~Driver.insert_arrow` a stream of batches into a table. :class:`ChdbDriver` runs
ClickHouse in this process (chdb) on a data directory; :class:`HttpDriver` talks to a
ClickHouse server over HTTP (clickhouse-connect: ``command``, ``query_arrow``,
``query_arrow_stream``, ``insert_arrow``). Both bind values as server-side ``{name:Type}``
parameters, use the same connection :data:`SETTINGS` and raise ``RuntimeError`` with the
server's message for a statement that fails.

chdb runs one embedded server per process, on one data directory at a time: connections
to the same directory share it, and a second directory can be opened only after every
connection to the first is closed (refused with a clear error meanwhile).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from profilesync.errors import ConfigurationError
from profilesync.store.backends import ServerURL
from profilesync.store.home import private_files

#: settings of every connection: UTC wall-clock times; SQL's scoping and NULLs (a column
#: of the FROM wins over a SELECT alias of the same name, outer joins and grouping sets
#: give NULL where ClickHouse would fill in default values); deletes and ALTERs done when
#: they return; a CTE marked MATERIALIZED is computed once (a segmentation reads its
#: aggregate twice: without it ClickHouse runs the join and aggregation twice)
SETTINGS = {
    "session_timezone": "UTC",
    "prefer_column_name_to_alias": "1",
    "join_use_nulls": "1",
    "group_by_use_nulls": "1",
    "mutations_sync": "2",
    "alter_sync": "2",
    "lightweight_deletes_sync": "2",
    "enable_materialized_cte": "1",
}


class Driver(Protocol):
    """Runs ClickHouse SQL; values are bound as ``{name:Type}`` parameters."""

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None: ...
    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table: ...
    def stream_arrow(
        self, sql: str, params: Mapping[str, Any] | None = None, rows: int = 65_536
    ) -> pa.RecordBatchReader:
        """A result in batches (hold the connection until the stream is read)."""
        ...

    def insert_arrow(
        self, table: str, columns: list[str], batches: pa.RecordBatchReader | pa.Table
    ) -> int:
        """Insert the batches' columns (named ``columns`` in ``table``); rows written."""
        ...

    def connect(self) -> Driver:
        """Another connection to the same engine (for reads that must not wait)."""
        ...

    def close(self) -> None: ...


def import_chdb() -> Any:
    """The chdb module, or the install line when it is missing."""
    try:
        import chdb
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigurationError(
            'the chdb store needs the clickhouse extra: pip install "profilesync[clickhouse]"'
        ) from exc
    return chdb


class _Engine:
    """The process's embedded ClickHouse: its data directory and open connections."""

    lock = threading.Lock()
    path: Path | None = None
    users = 0


class ChdbDriver:
    """ClickHouse in this process (chdb) with its data in ``path``; ``options`` are more
    settings (or ``config-file``) for the engine."""

    def __init__(self, path: Path, options: Mapping[str, str] | None = None) -> None:
        chdb = import_chdb()
        self.path = path
        self.options = dict(options or {})
        with _Engine.lock:
            if _Engine.users and _Engine.path != path:
                raise ConfigurationError(
                    f"this process has the chdb store in {_Engine.path} open; chdb runs one "
                    f"data directory per process, so {path} can be opened after it is closed"
                )
            query = "&".join(f"{k}={v}" for k, v in {**SETTINGS, **self.options}.items())
            with private_files():  # profiles and events: this user's only, as the store file
                path.mkdir(mode=0o700, parents=True, exist_ok=True)
                self.con = chdb.connect(f"{path}?{query}")
            _Engine.path, _Engine.users = path, _Engine.users + 1
        self.lock = threading.RLock()
        self.closed = False

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        with self.lock:
            self.con.query(sql, "CSV", params=dict(params or {}))

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        with self.lock:
            result = self.con.query(sql, "Arrow", params=dict(params or {}))
        if len(result) == 0:  # chdb hands back no bytes at all for an empty result
            return pa.table({})
        return pa.RecordBatchFileReader(result.get_memview().view()).read_all()

    def stream_arrow(
        self, sql: str, params: Mapping[str, Any] | None = None, rows: int = 65_536
    ) -> pa.RecordBatchReader:
        with self.lock:
            result = self.con.send_query(sql, "Arrow", params=dict(params or {}))
        return result.record_batch(rows_per_batch=rows)

    def insert_arrow(
        self, table: str, columns: list[str], batches: pa.RecordBatchReader | pa.Table
    ) -> int:
        names = ", ".join(quote_name(c) for c in columns)
        written = 0
        with (
            self.lock,
            self.con.send_insert(f"INSERT INTO {table} ({names})", "ArrowStream") as sink,
        ):
            for chunk in _ipc_chunks(batches):
                sink.append(chunk)
            written = int(sink.finish().rows_written)
        return written

    def connect(self) -> ChdbDriver:
        return ChdbDriver(self.path, self.options)

    def close(self) -> None:
        with _Engine.lock:
            if self.closed:
                return
            self.closed = True
            self.con.close()
            _Engine.users -= 1
            if not _Engine.users:
                _Engine.path = None


class HttpDriver:
    """A ClickHouse server over HTTP (clickhouse-connect); ``settings`` add to
    :data:`SETTINGS` (a cluster's, for one)."""

    def __init__(self, server: ServerURL, settings: Mapping[str, str] | None = None) -> None:
        module = import_clickhouse_connect()
        self.server = server
        self.extra = dict(settings or {})
        try:
            self.client = module.get_client(
                host=server.host,
                port=server.port,
                username=server.user,
                password=server.password,
                database=server.database,
                secure=server.secure,
                settings={**SETTINGS, **self.extra},
            )
        except Exception as exc:
            raise ConfigurationError(
                f"cannot reach the ClickHouse server {server.name}: {_first_line(exc)}"
            ) from None

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        with _errors():
            self.client.command(sql, parameters=dict(params or {}))

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        with _errors():
            table: pa.Table = self.client.query_arrow(
                sql, parameters=dict(params or {}), use_strings=True
            )
        return table

    def stream_arrow(
        self, sql: str, params: Mapping[str, Any] | None = None, rows: int = 65_536
    ) -> pa.RecordBatchReader:
        with _errors():
            stream = self.client.query_arrow_stream(
                sql,
                parameters=dict(params or {}),
                settings={"max_block_size": rows},
                use_strings=True,
            )
            batches = iter(stream.__enter__())
            first = next(batches, None)
        if first is None:
            stream.__exit__(None, None, None)
            return pa.RecordBatchReader.from_batches(pa.schema([]), [])

        def rest() -> Iterator[pa.RecordBatch]:
            try:
                yield first
                with _errors():
                    yield from batches
            finally:
                stream.__exit__(None, None, None)

        return pa.RecordBatchReader.from_batches(first.schema, rest())

    def insert_arrow(
        self, table: str, columns: list[str], batches: pa.RecordBatchReader | pa.Table
    ) -> int:
        """The batches in inserts of up to about 8 MB (one insert for a small table)."""
        source = batches.to_reader() if isinstance(batches, pa.Table) else batches
        written, chunk, size = 0, [], 0
        for batch in source:
            chunk.append(batch.rename_columns(columns))
            size += batch.nbytes
            if size >= 8 << 20:
                written += self._insert(table, chunk)
                chunk, size = [], 0
        if chunk:
            written += self._insert(table, chunk)
        return written

    def _insert(self, table: str, chunk: list[pa.RecordBatch]) -> int:
        rows = pa.Table.from_batches(chunk)
        with _errors():
            self.client.insert_arrow(table, rows)
        return rows.num_rows

    def connect(self) -> HttpDriver:
        return HttpDriver(self.server, self.extra)

    def close(self) -> None:
        self.client.close()


def import_clickhouse_connect() -> Any:
    """The clickhouse-connect module, or the install line when it is missing."""
    try:
        import clickhouse_connect
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigurationError(
            'a ClickHouse server store needs the clickhouse extra: pip install "profilesync[clickhouse]"'
        ) from exc
    return clickhouse_connect


@contextmanager
def _errors() -> Iterator[None]:
    """A statement the server refused as ``RuntimeError`` (as chdb raises it), with the
    server's message; a lost connection as a clear error."""
    from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

    try:
        yield
    except OperationalError as exc:
        raise ConfigurationError(
            f"the ClickHouse server did not answer: {_first_line(exc)}"
        ) from None
    except DatabaseError as exc:
        raise RuntimeError(str(exc)) from exc


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _ipc_chunks(batches: pa.RecordBatchReader | pa.Table) -> Iterable[bytes]:
    """The batches as one Arrow IPC stream, in pieces of a batch or so (bounded memory)."""
    source = batches.to_reader() if isinstance(batches, pa.Table) else batches
    buffer = io.BytesIO()
    with pa.ipc.new_stream(buffer, source.schema) as writer:
        for batch in source:
            writer.write_batch(batch)
            if buffer.tell() >= 8 << 20:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
    yield buffer.getvalue()


def quote_name(name: str) -> str:
    """A ClickHouse identifier in backquotes (any text a column may be named)."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def naive_times(table: pa.Table, keep: frozenset[str] = frozenset()) -> pa.Table:
    """Timestamps as UTC wall-clock (ClickHouse hands every one back with a zone), except the
    columns in ``keep`` (``TIMESTAMP WITH TIME ZONE`` properties)."""
    columns = []
    for field, column in zip(table.schema, table.columns, strict=True):
        if pa.types.is_timestamp(field.type) and field.type.tz and field.name not in keep:
            column = column.cast(pa.timestamp(field.type.unit))
        columns.append(column)
    return pa.table(columns, names=table.column_names) if columns else table


#: mypy checks here that both drivers are whole :class:`Driver` s
_drivers: tuple[type[Driver], ...] = (ChdbDriver, HttpDriver)
