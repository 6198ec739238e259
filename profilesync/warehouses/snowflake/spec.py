"""The settings of a Snowflake connection: account, user, a password or a key pair."""

from __future__ import annotations

from typing import Any

from profilesync.errors import ConfigurationError
from profilesync.warehouses.spec import ConfigField, ConfigSpec

_AUTH = ("password", "private_key", "private_key_file")


def _validate(config: dict[str, Any]) -> dict[str, Any]:
    if not any(config.get(k) for k in _AUTH):
        raise ConfigurationError(
            "a snowflake connection needs -o password=... or a key pair "
            "(-o private_key='<PEM>' or -o private_key_file=PATH, with -o private_key_passphrase=... if encrypted)"
        )
    return {"schema": "PUBLIC", **{k: v for k, v in config.items() if v not in (None, "")}}


SPEC = ConfigSpec(
    kind="snowflake",
    label="Snowflake",
    blurb="CDC with CHANGES on tables with CHANGE_TRACKING = TRUE.",
    fields=(
        ConfigField("account", "Account", required=True, placeholder="myorg-myaccount"),
        ConfigField("user", "User", required=True),
        ConfigField(
            "password", "Password", help="Or a key pair below.", secret=True, kind="password"
        ),
        ConfigField(
            "private_key",
            "Private key (PEM)",
            help="For key-pair authentication. Kept encrypted; never shown again.",
            secret=True,
            kind="textarea",
        ),
        ConfigField(
            "private_key_file", "Private key file", kind="path", placeholder="/secure/rsa_key.p8"
        ),
        ConfigField(
            "private_key_passphrase", "Private key passphrase", secret=True, kind="password"
        ),
        ConfigField("warehouse", "Warehouse"),
        ConfigField("role", "Role"),
        ConfigField("database", "Database", required=True),
        ConfigField("schema", "Schema", default="PUBLIC", placeholder="PUBLIC"),
    ),
    validate=_validate,
    strict=True,
)
