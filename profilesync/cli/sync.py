"""``sync`` and ``runs``: run a source now, and its run history with rejected rows."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from profilesync.app import runs
from profilesync.cli._shared import JsonOpt, home, out, print_json, store, table
from profilesync.model import SyncResult

RUN_COLUMNS = ["id", "status", "mode", "ins", "upd", "del", "rejected", "ops", "checkpoint", "finished", "error"]  # fmt: skip
RUN_FIELDS = ["id", "status", "mode", "inserted", "updated", "deleted", "rejected", "operations", "checkpoint", "finished_at", "error"]  # fmt: skip


def sync_cmd(
    name: str,
    resync: Annotated[
        bool,
        typer.Option(
            "--resync",
            help="Diff the current snapshot against the store (after a replace or expired history).",
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Run one sync of a source now."""
    if json_out or not out.is_terminal:
        result = runs.sync_now(home(), name, resync=resync)
    else:
        result = _sync_with_bar(name, resync)
    doc = result.to_json()
    if json_out:
        print_json(doc)
    else:
        out.print(
            f"[green]synced[/] {name} ({doc['mode']}): {doc['inserted']:,} inserted, {doc['updated']:,} updated, "
            f"{doc['deleted']:,} deleted, {doc['rejected']:,} rejected; {doc['operations']:,} operations; "
            f"checkpoint {doc['checkpoint']}"
        )


def _sync_with_bar(name: str, resync: bool) -> SyncResult:
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,} rows"),
        TimeElapsedColumn(),
        console=out,
        transient=True,
    ) as bar:
        task = bar.add_task(f"sync {name}", total=None)
        return runs.sync_now(
            home(),
            name,
            resync=resync,
            progress=lambda stage, rows: bar.update(
                task, completed=rows, description=f"sync {name}: {stage}"
            ),
        )


def runs_cmd(
    name: str,
    limit: Annotated[int, typer.Option(help="How many runs.")] = 20,
    json_out: JsonOpt = False,
) -> None:
    """Run history of a source, with rejected rows and their reasons."""
    with store() as opened:
        history = runs.history(opened, name, limit, with_rejected=True)
    if json_out:
        print_json(history)
        return
    table(f"runs of {name}", RUN_COLUMNS, [[r[f] for f in RUN_FIELDS] for r in history])
    for run in history:
        for rej in run["rejected_rows"]:
            out.print(
                f"  run {run['id']} rejected: {rej['reason']}  {json.dumps(rej['row'], default=str)}"
            )
