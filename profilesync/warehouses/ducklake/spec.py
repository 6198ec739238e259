"""The settings of a DuckLake connection: its catalog and where its data files live."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from profilesync.errors import ConfigurationError
from profilesync.warehouses.spec import ConfigField, ConfigSpec


def _validate(config: dict[str, Any]) -> dict[str, Any]:
    catalog = str(config["catalog"]).removeprefix("ducklake:")
    result: dict[str, Any] = {}
    if ":" in catalog.split("/")[0]:  # a catalog database string, e.g. postgres:dbname=...
        result["catalog"] = catalog
    else:
        path = Path(catalog).expanduser().resolve()
        if not path.is_file():
            raise ConfigurationError(
                f"{path} is not a DuckLake catalog file: --catalog must name an existing one "
                "(create the lake first, e.g. ATTACH 'ducklake:FILE' AS lake (DATA_PATH 'DIR'))",
                ui_fix="Choose an existing DuckLake catalog file",
            )
        result["catalog"] = str(path)
    if config.get("data_path"):
        data = str(config["data_path"])
        result["data_path"] = data if "://" in data else str(Path(data).expanduser().resolve())
    return result


SPEC = ConfigSpec(
    kind="ducklake",
    label="DuckLake",
    blurb="CDC through table_changes between DuckLake snapshots.",
    fields=(
        ConfigField(
            "catalog",
            "Catalog",
            required=True,
            placeholder="/data/lake.ducklake or postgres:dbname=lake",
        ),
        ConfigField("data_path", "Data path", kind="path", placeholder="/data/lake_files"),
    ),
    validate=_validate,
    needs=(
        "a ducklake connection needs --catalog (a DuckLake catalog file, or a catalog "
        "string such as postgres:dbname=lake) and --data-path DIR"
    ),
)
