"""The settings of a Delta Lake connection: one directory of Delta tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from profilesync.errors import ConfigurationError
from profilesync.warehouses.spec import ConfigField, ConfigSpec


def _validate(config: dict[str, Any]) -> dict[str, Any]:
    resolved = Path(config["path"]).expanduser().resolve()
    if not resolved.is_dir():
        raise ConfigurationError(
            f"{resolved} is not a directory: --path must hold Delta tables",
            ui_fix="Choose the directory that holds the Delta tables",
        )
    return {"path": str(resolved)}


SPEC = ConfigSpec(
    kind="delta",
    label="Delta Lake",
    blurb="A directory of Delta tables (local or mounted); CDC through the change data feed.",
    fields=(
        ConfigField(
            "path",
            "Directory of Delta tables",
            help="Every sub-directory holding a _delta_log is a table, named schema.table.",
            required=True,
            kind="path",
            placeholder="/data/lake",
        ),
    ),
    validate=_validate,
    needs="a delta connection needs --path DIR (a directory of Delta tables)",
)
