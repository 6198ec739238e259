"""``profilesync demo``: a small Delta Lake warehouse, two sources, two syncs, what changed."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake
from rich.console import Console
from rich.table import Table

from profilesync.app import Store, open_store
from profilesync.app.runs import sync_source
from profilesync.demo.common import cli_command, describe_backend
from profilesync.demo.events import add_demo_events
from profilesync.mapping import from_columns, from_query
from profilesync.model import Connection, Mapping, Source

TITLES = [
    "Data Engineer",
    "Analyst",
    "Product Manager",
    "Designer",
    "Engineering Manager",
    "Founder",
]
SENIORITY = ["junior", "mid", "senior", "staff", "principal"]
DMAS = [
    "New York",
    "Los Angeles",
    "Chicago",
    "San Francisco-Oakland-San Jose",
    "Seattle-Tacoma",
    "Boston",
]
CDF = {"delta.enableChangeDataFeed": "true"}
SCORES_QUERY = """SELECT user_id AS "user_id",
       upgrade_propensity_score AS "Upgrade Propensity Score",
       user_model_version AS "User Model Version"
FROM ml_models.prod_propensity_scoring"""


def build_warehouse(root: Path, users: int = 20, seed: int = 7) -> list[int]:
    """Create ``prod_users.demo_data`` and ``ml_models.prod_propensity_scoring`` with CDF on."""
    rng = random.Random(seed)
    uids = [100_001 + i for i in range(users)]
    write_deltalake(
        str(root / "prod_users" / "demo_data"),
        pa.table(
            {
                "uid": pa.array(uids, pa.int64()),
                "title": [rng.choice(TITLES) for _ in uids],
                "seniority": [rng.choice(SENIORITY) for _ in uids],
                "dma": [rng.choice(DMAS) for _ in uids],
                "num_purchases": pa.array([rng.randint(0, 40) for _ in uids], pa.int64()),
            }
        ),
        configuration=CDF,
    )
    write_deltalake(
        str(root / "ml_models" / "prod_propensity_scoring"),
        pa.table(
            {
                "user_id": [str(u) for u in uids],
                "upgrade_propensity_score": [round(rng.random(), 3) for _ in uids],
                "user_model_version": ["v1"] * users,
            }
        ),
        configuration=CDF,
    )
    return uids


def change_warehouse(root: Path) -> list[str]:
    """Updates, a delete, a NULL-out, new users and a bad user_id; returns the story."""
    users = DeltaTable(str(root / "prod_users" / "demo_data"))
    users.update(
        predicate="uid = 100003", updates={"title": "'Head of Data'", "seniority": "'principal'"}
    )
    users.delete("uid = 100005")
    users.update(predicate="uid = 100007", updates={"dma": "NULL"})
    write_deltalake(
        users,
        pa.table(
            {
                "uid": pa.array([100_021, 100_022, 123], pa.int64()),
                "title": ["Analyst", "Data Engineer", "Intern"],
                "seniority": ["junior", "mid", "junior"],
                "dma": ["Boston", "Chicago", "Boston"],
                "num_purchases": pa.array([1, 0, 2], pa.int64()),
            }
        ),
        mode="append",
    )
    scores = DeltaTable(str(root / "ml_models" / "prod_propensity_scoring"))
    scores.update(
        predicate="user_id = '100003'",
        updates={"upgrade_propensity_score": "0.97", "user_model_version": "'v2'"},
    )
    return [
        "100003: promoted (title, seniority) and re-scored by model v2",
        "100005: deleted from the users table",
        "100007: DMA set to NULL",
        "100021, 100022: new users",
        "123: a new row whose user_id is too short (rejected with a reason)",
    ]


def run_demo(directory: Path, console: Console, backend: str | None = None) -> None:
    """The demo in ``directory`` (replaced), its home on ``backend`` (duckdb by default)."""
    directory = directory.resolve()
    if directory.exists():
        shutil.rmtree(directory)
    warehouse, home = directory / "warehouse", directory / "home"
    build_warehouse(warehouse)
    console.print(f"[bold]profilesync demo[/] in {directory}")
    console.print(f"  warehouse: Delta tables under {warehouse} (change data feed on)")
    with open_store(home, backend) as store:
        console.print(f"  store: {describe_backend(backend)}")
        store.add_connection(Connection("lake", "delta", {"path": str(warehouse)}))
        store.add_source(Source("users", "lake", users_mapping()))
        store.add_source(Source("scores", "lake", from_query(SCORES_QUERY, "databricks")))
        console.print("\n[bold]1. first sync[/] (snapshot)")
        sync_all(store, console)
        before = {p["user_id"]: p for p in store.export_profiles()}
        console.print("\n[bold]2. the warehouse changes[/]")
        for line in change_warehouse(warehouse):
            console.print(f"  - {line}")
        console.print("\n[bold]3. incremental sync[/] (change data feed)")
        sync_all(store, console)
        after = {p["user_id"]: p for p in store.export_profiles()}
        print_diff(console, before, after)
        print_rejected(store, console)
        add_demo_events(store, console, before)
    console.print(f"\nTry: [bold]{cli_command()} --home {home} profile get 100003 --json[/]")
    console.print(f"     {cli_command()} --home {home} runs users")
    console.print(f"Files are in {directory}")
    console.print(
        f"Open the web UI on this home: [bold]{cli_command()} --home {home} serve[/] "
        "(Segmentation, Funnels, Retention and Cohorts pages)"
    )


def users_mapping() -> Mapping:
    """The demo's users table: four columns become profile properties."""
    return from_columns(
        "prod_users.demo_data",
        "uid",
        [
            ("title", "Title"),
            ("seniority", "Seniority"),
            ("dma", "DMA"),
            ("num_purchases", "Number of Purchases"),
        ],
    )


def print_rejected(store: Store, console: Console) -> None:
    """The rows the last ``users`` sync rejected, with the reason."""
    for run in store.runs("users", limit=1):
        for rej in store.rejected_rows(run["id"]):
            console.print(f"  rejected: {rej['reason']}  {json.dumps(rej['row'])}")


def sync_all(store: Store, console: Console) -> None:
    table = Table(
        "source", "mode", "inserted", "updated", "deleted", "rejected", "operations", "checkpoint"
    )
    for name in ("users", "scores"):
        r = sync_source(store, name)
        table.add_row(
            name,
            r.mode,
            *(
                str(v)
                for v in (r.inserted, r.updated, r.deleted, r.rejected, r.operations, r.checkpoint)
            ),
        )
    console.print(table)


def print_diff(console: Console, before: dict[str, Any], after: dict[str, Any]) -> None:
    table = Table(
        "user_id",
        "property",
        "before",
        "after",
        title="what changed in the profile store",
        title_justify="left",
    )
    for uid in sorted(set(before) | set(after)):
        old = before.get(uid, {}).get("properties", {})
        new = after.get(uid, {}).get("properties", {})
        if uid not in after:
            table.add_row(uid, "(profile removed)", "", "")
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                table.add_row(uid, key, _fmt(old.get(key)), _fmt(new.get(key)))
    console.print(table)


def _fmt(value: Any) -> str:
    return "-" if value is None else json.dumps(value)
