"""The peers benchmark's data and contenders: Delta and DuckDB warehouses, profilesync,
the raw no-PK path, the raw ``MERGE`` with a primary key and dlt, and the equality checks
run after every contender (see ``peers.py``)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from _harness import Result
from deltalake import DeltaTable, write_deltalake
from sync_throughput import CDF, users_table

# dlt reports anonymous telemetry unless told not to; a benchmark sends nothing
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
os.environ.setdefault("RUNTIME__LOG_LEVEL", "ERROR")

COLUMNS = ("plan", "title", "score", "purchases")
OUT = Path(__file__).resolve().parent / "out"
FIRST_ID = 1_000_000
NAMES = ("profilesync", "raw no-PK", "raw MERGE+PK", "dlt")
PRELOAD = {
    "profilesync": ("profilesync", "profilesync.engine.sync", "deltalake"),
    "raw no-PK": ("deltalake",),
    "raw MERGE+PK": ("deltalake",),
    "dlt": ("deltalake", "dlt", "dlt.destinations"),
}
#: what the check hashes, the same on both sides
FINGERPRINT = """SELECT count(*), count(DISTINCT {uid}::VARCHAR),
    sum(hash({uid}::VARCHAR, plan::VARCHAR, title::VARCHAR, score::DOUBLE, purchases::BIGINT)::HUGEINT)
    FROM {rel}"""


def size(text: str) -> int:
    """``100k``, ``5M`` or a plain number."""
    text = text.strip().lower().replace("_", "")
    factor = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("km")) * factor)


def label(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1_000}k"


# -- warehouses ---------------------------------------------------------------------------


def build_delta(path: Path, users: int) -> None:
    """A Delta table of ``users`` users with change data feed, written in 1M-row commits'
    worth of batches so building 50M does not hold it all at once."""
    chunk = 1_000_000
    for start in range(0, users, chunk):
        ids = np.arange(FIRST_ID + start, FIRST_ID + min(users, start + chunk))
        write_deltalake(
            str(path),
            users_table(ids, 1 + start // chunk),
            mode="append",
            configuration=CDF if start == 0 else None,
        )


def change_delta(path: Path, users: int, updates: int, deletes: int, inserts: int) -> None:
    """Updates spread through the table (one MERGE), deletes (another), then an append of
    new users after the last id."""
    rng = np.random.default_rng(users + updates)
    picked = rng.choice(np.arange(FIRST_ID, FIRST_ID + users), updates + deletes, replace=False)
    if updates:
        DeltaTable(str(path)).merge(
            users_table(picked[:updates], 3), "t.uid = s.uid", source_alias="s", target_alias="t"
        ).when_matched_update_all().execute()
    if deletes:
        gone = pa.table({"uid": pa.array(picked[updates:], pa.int64())})
        DeltaTable(str(path)).merge(
            gone, "t.uid = s.uid", source_alias="s", target_alias="t"
        ).when_matched_delete().execute()
    if inserts:
        new = np.arange(FIRST_ID + users, FIRST_ID + users + inserts)
        write_deltalake(str(path), users_table(new, 4), mode="append")


def delta_fingerprint(path: Path) -> tuple[Any, ...]:
    import duckdb

    snap = DeltaTable(str(path)).to_pyarrow_table(columns=["uid", *COLUMNS])  # noqa: F841
    with duckdb.connect() as con:
        return con.execute(FINGERPRINT.format(uid="uid", rel="snap")).fetchone()  # type: ignore[return-value]


def build_duckdb(path: Path, users: int) -> None:
    from diff_throughput import build, connect

    con = connect(path)
    build(con, "main.users", users)
    con.close()


def change_duckdb(path: Path, users: int) -> None:
    from diff_throughput import change, connect

    con = connect(path)
    change(con, "main.users", users, users // 100, (0.6, 0.2))
    con.close()


def duckdb_fingerprint(path: Path) -> tuple[Any, ...]:
    import duckdb

    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(FINGERPRINT.format(uid="uid", rel="main.users")).fetchone()  # type: ignore[return-value]


# -- contenders: (source, home) -> {"rows": ...} -----------------------------------------


def profilesync_setup(kind: str, source: Path, home: Path) -> Result:
    from profilesync import Connection, Source, from_columns, open_store

    with open_store(home) as store:
        if kind == "delta":
            store.add_connection(Connection("wh", "delta", {"path": str(source.parent)}))
            mapping = from_columns(source.name, "uid", [(c, c) for c in COLUMNS])
            store.add_source(Source("users", "wh", mapping))
        else:
            store.add_connection(Connection("wh", "duckdb", {"path": str(source)}))
            mapping = from_columns("main.users", "uid", [(c, c) for c in COLUMNS])
            store.add_source(Source("users", "wh", mapping, strategy="diff"))
    return {}


def profilesync_sync(source: Path, home: Path) -> Result:
    from profilesync import open_store
    from profilesync.engine.sync import sync

    with open_store(home) as store:
        result = sync(store, "users")
    if result.rejected:
        raise RuntimeError(f"profilesync rejected {result.rejected} rows")
    return {"rows": result.read}


def raw_sync(table: Path, home: Path) -> Result:
    """Snapshot -> bulk insert; then change feed -> last change per user -> delete by join +
    append, into a table with no primary key."""
    import duckdb

    home.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(home / "raw.duckdb"))
    con.execute("CREATE TABLE IF NOT EXISTS state (version BIGINT)")
    last = con.execute("SELECT max(version) FROM state").fetchone()[0]  # type: ignore[index]
    dt = DeltaTable(str(table))
    version = dt.version()
    con.execute("BEGIN")
    if last is None:
        snap = dt.to_pyarrow_table(columns=["uid", *COLUMNS])
        con.execute(
            "CREATE TABLE p AS SELECT uid::VARCHAR AS user_id, plan::VARCHAR AS plan, "
            "title::VARCHAR AS title, score, purchases FROM snap"
        )
        rows = snap.num_rows
    else:
        cdf = pa.RecordBatchReader.from_stream(
            dt.load_cdf(starting_version=int(last) + 1, ending_version=version)
        ).read_all()
        rows = cdf.num_rows
        con.execute("""CREATE TEMP TABLE c AS SELECT uid::VARCHAR AS user_id, plan::VARCHAR AS plan,
                       title::VARCHAR AS title, score, purchases, _change_type::VARCHAR AS t
                       FROM cdf WHERE _change_type <> 'update_preimage'
                       QUALIFY row_number() OVER (PARTITION BY uid ORDER BY _commit_version DESC) = 1""")
        con.execute("DELETE FROM p USING c WHERE p.user_id = c.user_id")
        con.execute(
            "INSERT INTO p SELECT user_id, plan, title, score, purchases FROM c WHERE t <> 'delete'"
        )
    con.execute("INSERT INTO state VALUES (?)", [version])
    con.execute("COMMIT")
    con.close()
    return {"rows": rows}


def _dlt_run(home: Path, data: pa.Table, disposition: str) -> None:
    import dlt

    pipeline = dlt.pipeline(
        pipeline_name="profiles",
        destination=dlt.destinations.duckdb(str(home / "dlt.duckdb")),
        dataset_name="profiles",
        pipelines_dir=str(home / "pipelines"),
    )
    hints: dict[str, Any] = {"write_disposition": disposition}
    if disposition == "merge":
        hints.update(
            primary_key="user_id", columns={"deleted": {"data_type": "bool", "hard_delete": True}}
        )
    pipeline.run(dlt.resource(data, name="users", **hints))


def dlt_sync(table: Path, home: Path) -> Result:
    """dlt with Arrow input: the snapshot, then each window's last change per user, merged on
    ``user_id`` with deletes flagged in a hard-delete column."""
    import duckdb

    home.mkdir(parents=True, exist_ok=True)
    state = home / "version.json"
    last = json.loads(state.read_text()) if state.exists() else None
    dt = DeltaTable(str(table))
    version = dt.version()
    if last is None:
        snap = dt.to_pyarrow_table(columns=["uid", *COLUMNS])
        data = pa.table(
            {
                "user_id": snap["uid"].cast(pa.string()),
                **{c: snap[c].cast(pa.string()) for c in ("plan", "title")},
                "score": snap["score"],
                "purchases": snap["purchases"],
            }
        )
    else:
        cdf = pa.RecordBatchReader.from_stream(  # noqa: F841
            dt.load_cdf(starting_version=int(last) + 1, ending_version=version)
        ).read_all()
        with duckdb.connect() as con:
            data = con.execute("""SELECT uid::VARCHAR AS user_id, plan::VARCHAR AS plan, title::VARCHAR AS title,
                       score, purchases, _change_type = 'delete' AS deleted
                       FROM cdf WHERE _change_type <> 'update_preimage'
                       QUALIFY row_number() OVER (PARTITION BY uid ORDER BY _commit_version DESC) = 1""").fetch_arrow_table()
    _dlt_run(home, data, "merge")
    state.write_text(json.dumps(version))
    return {"rows": data.num_rows}


def raw_diff(warehouse: Path, home: Path) -> Result:
    """The shortest correct no-PK resync: reload the whole table."""
    import duckdb

    home.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(home / "raw.duckdb"))
    con.execute(f"ATTACH '{warehouse}' AS wh (READ_ONLY)")
    con.execute(
        "CREATE OR REPLACE TABLE p AS SELECT uid::VARCHAR AS user_id, plan, title, score, purchases "
        "FROM wh.main.users"
    )
    rows = con.execute("SELECT count(*) FROM p").fetchone()[0]  # type: ignore[index]
    con.close()
    return {"rows": rows}


def merge_pk_diff(warehouse: Path, home: Path) -> Result:
    from diff_throughput import diff_baseline

    return diff_baseline(warehouse, home)


def dlt_diff(warehouse: Path, home: Path) -> Result:
    """dlt's full reload: the table as Arrow, ``replace`` disposition."""
    import duckdb

    home.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        data = con.execute(
            "SELECT uid::VARCHAR AS user_id, plan, title, score, purchases FROM main.users"
        ).fetch_arrow_table()
    _dlt_run(home, data, "replace")
    return {"rows": data.num_rows}


# -- checks -------------------------------------------------------------------------------


def store_fingerprint(name: str, home: Path) -> tuple[Any, ...]:
    import duckdb

    if name == "profilesync":
        import sqlglot

        from profilesync import open_store

        with open_store(home) as store:
            rel = store.profile_relation(store.get_source("users"))
            query = sqlglot.parse_one(FINGERPRINT.format(uid="user_id", rel=rel), read="duckdb")
            with store.reader() as reader:
                return tuple(reader.read(query)[0])
    file, rel = {
        "raw no-PK": ("raw.duckdb", "p"),
        "raw MERGE+PK": ("baseline.duckdb", "p"),
        "dlt": ("dlt.duckdb", "profiles.users"),
    }[name]
    with duckdb.connect(str(home / file), read_only=True) as con:
        return con.execute(FINGERPRINT.format(uid="user_id", rel=rel)).fetchone()  # type: ignore[return-value]


def checker(expected: tuple[Any, ...]) -> Callable[[str, Path], str | None]:
    def check(name: str, home: Path) -> str | None:
        got = store_fingerprint(name, home)
        if tuple(got) != tuple(expected):
            return f"store != warehouse: (rows, users, hash) {tuple(got)} vs {tuple(expected)}"
        return None

    return check
