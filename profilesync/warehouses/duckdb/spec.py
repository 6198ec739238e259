"""The settings of a DuckDB connection: one database file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from profilesync.errors import ConfigurationError
from profilesync.warehouses.spec import ConfigField, ConfigSpec


def _validate(config: dict[str, Any]) -> dict[str, Any]:
    resolved = Path(config["path"]).expanduser().resolve()
    if not resolved.is_file():
        raise ConfigurationError(
            f"{resolved} is not a file: --path must be an existing DuckDB database file",
            ui_fix="Choose an existing DuckDB database file",
        )
    return {"path": str(resolved)}


SPEC = ConfigSpec(
    kind="duckdb",
    label="DuckDB file",
    blurb="A DuckDB database file; synced by snapshot diff.",
    fields=(
        ConfigField(
            "path",
            "Database file",
            required=True,
            kind="path",
            placeholder="/data/warehouse.duckdb",
        ),
    ),
    validate=_validate,
    needs="a duckdb connection needs --path FILE (a DuckDB database file)",
)
