"""The settings of a PostgreSQL connection: a libpq connection string and a password."""

from __future__ import annotations

from typing import Any

from profilesync.errors import ConfigurationError, MissingDependencyError
from profilesync.warehouses.spec import ConfigField, ConfigSpec


def _validate(config: dict[str, Any]) -> dict[str, Any]:
    try:
        import psycopg
    except ImportError:
        raise MissingDependencyError("psycopg", "postgres") from None
    try:
        psycopg.conninfo.conninfo_to_dict(config["dsn"])
    except psycopg.ProgrammingError as exc:
        raise ConfigurationError(
            f"--dsn is not a valid libpq connection string: {exc}",
            ui_message=f"the connection string is not a valid libpq connection string: {exc}",
            ui_fix="Correct the connection string",
        ) from None
    return {k: v for k, v in config.items() if v}


SPEC = ConfigSpec(
    kind="postgres",
    label="PostgreSQL",
    blurb="CDC through a logical replication slot profilesync creates per source.",
    fields=(
        ConfigField(
            "dsn",
            "Connection string",
            help="A libpq connection string or postgresql:// URL; the server needs wal_level = logical.",
            required=True,
            placeholder="host=db.internal dbname=app user=profilesync",
        ),
        ConfigField(
            "password",
            "Password",
            help="Kept encrypted; never shown again.",
            secret=True,
            kind="password",
        ),
    ),
    validate=_validate,
    needs=(
        "a postgres connection needs --dsn, a libpq connection string such as "
        "'host=db.example.com port=5432 dbname=analytics user=profilesync' "
        "(give the password with --option password=...)"
    ),
)
