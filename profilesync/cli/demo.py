"""``profilesync demo``: build a small warehouse, sync it, change it, sync again."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from profilesync.app.home import check_backend_name
from profilesync.cli._shared import out, state
from profilesync.errors import ConfigurationError


def demo_cmd(
    directory: Annotated[
        Path,
        typer.Option("--dir", help="Where the demo warehouse and home go (replaced if present)."),
    ] = Path("profilesync-demo"),
    warehouse: Annotated[
        str,
        typer.Option(
            "--warehouse",
            help="delta (Delta Lake tables) or postgres (starts a throwaway local PostgreSQL 15).",
        ),
    ] = "delta",
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            help="duckdb (the default), chdb or clickhouse://... for the demo's home "
            "[default: the global --store].",
        ),
    ] = None,
) -> None:
    """Build a small warehouse, sync it, change it, sync again and show what changed."""
    backend = check_backend_name(store) if store else state["store"]
    if warehouse == "postgres":
        from profilesync.demo.postgres import run_demo as run_postgres_demo

        run_postgres_demo(directory, out, backend)
        return
    if warehouse != "delta":
        raise ConfigurationError(f"--warehouse {warehouse!r}: choose delta or postgres")
    from profilesync.demo.delta import run_demo

    run_demo(directory, out, backend)
