"""What the demos share: how to name the ``profilesync`` command in their hints."""

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
