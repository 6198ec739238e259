"""The settings of a Databricks SQL warehouse connection."""

from __future__ import annotations

from typing import Any

from profilesync.warehouses.spec import ConfigField, ConfigSpec


def _validate(config: dict[str, Any]) -> dict[str, Any]:
    hostname = str(config["server_hostname"]).removeprefix("https://").rstrip("/")
    return {"schema": "default", **config, "server_hostname": hostname}


SPEC = ConfigSpec(
    kind="databricks",
    label="Databricks SQL",
    blurb="CDC with table_changes on tables with the change data feed on.",
    fields=(
        ConfigField("server_hostname", "Server hostname", required=True),
        ConfigField("http_path", "HTTP path", required=True, placeholder="/sql/1.0/warehouses/..."),
        ConfigField("access_token", "Access token", secret=True, required=True, kind="password"),
        ConfigField("catalog", "Catalog", required=True, placeholder="main"),
        ConfigField("schema", "Schema", default="default", placeholder="default"),
    ),
    validate=_validate,
    strict=True,
    needs_hint=" (server hostname and HTTP path are on the SQL warehouse's Connection details tab)",
)
