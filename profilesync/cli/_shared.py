"""What every command group shares: the consoles, the home, the store and the printers.

Command modules import this, never the package ``__init__``, so registering them there
makes no import cycle.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from profilesync.app.home import Store, pin_backend, session

out = Console()
err = Console(stderr=True)
#: set by the root callback from ``--home`` / ``--store`` / ``--debug``; ``pinned``: the
#: home's backend was checked against ``--store`` (and recorded in a new home)
state: dict[str, Any] = {"home": None, "store": None, "debug": False, "pinned": False}

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


def home() -> Path:
    """The home, on the backend ``--store`` names (checked once; a new home records it):
    for code that opens the home's store by its path."""
    path: Path = state["home"]
    if state["store"] and not state["pinned"]:
        pin_backend(path, state["store"])
        state["pinned"] = True
    return path


@contextmanager
def store() -> Iterator[Store]:
    """The home's store (on ``--store``, else the backend it was made with), closed when
    the command is done."""
    with session(state["home"], state["store"]) as opened:
        state["pinned"] = True
        yield opened


def print_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")


def table(title: str | None, columns: list[str], rows: list[list[Any]]) -> None:
    shown = Table(title=title, title_justify="left")
    for col in columns:
        shown.add_column(col)
    for row in rows:
        shown.add_row(*("" if v is None else str(v) for v in row))
    out.print(shown)


def print_check(check: dict[str, Any]) -> None:
    """One Test mapping check as a coloured line, with the SQL that fixes it."""
    style = {"pass": "green", "warn": "yellow", "fail": "red", "info": "blue"}[check["level"]]
    out.print(f"[{style}]{check['level']:>4}[/] {check['name']}: {check['message']}")
    if check.get("fix_sql"):
        out.print(f"      run: [bold]{check['fix_sql']}[/]")
