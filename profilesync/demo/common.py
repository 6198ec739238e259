"""What the demos share: how to name the ``profilesync`` command and the store in their hints."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def cli_command() -> str:
    """How to run profilesync from here: the script beside this interpreter when not on PATH."""
    script = Path(sys.executable).parent / "profilesync"
    if shutil.which("profilesync") or not script.exists():
        return "profilesync"
    return os.path.relpath(script) if not os.path.relpath(script).startswith("..") else str(script)


def describe_backend(backend: str | None) -> str:
    """The store a demo runs on, as its output names it."""
    if backend == "chdb":
        return "chdb (ClickHouse in this process, its data in the home)"
    if backend and backend != "duckdb":
        return f"{backend.split('@')[-1]} (profiles and events on a ClickHouse server)"
    return "duckdb (one file in the home)"
