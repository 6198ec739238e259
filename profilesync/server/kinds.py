"""The connection form of each warehouse kind: its fields, labels and help text.

The UI builds the "Set up connection" step and the "Add more" tiles from this table;
which fields are secrets comes from each source class (``secret_fields``) and
:func:`profilesync.secrets.secret_fields`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from profilesync.errors import ConfigurationError
from profilesync.sources import KINDS, source_class


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    required: bool = False
    secret: bool = False
    multiline: bool = False
    placeholder: str = ""
    help: str = ""


@dataclass(frozen=True)
class Kind:
    kind: str
    label: str
    blurb: str
    fields: tuple[Field, ...]


_KINDS = (
    Kind(
        "delta",
        "Delta Lake",
        "A directory of Delta tables (local or mounted); CDC through the change data feed.",
        (
            Field(
                "path",
                "Directory of Delta tables",
                required=True,
                placeholder="/data/lake",
                help="Every sub-directory holding a _delta_log is a table, named schema.table.",
            ),
        ),
    ),
    Kind(
        "postgres",
        "PostgreSQL",
        "CDC through a logical replication slot profilesync creates per source.",
        (
            Field(
                "dsn",
                "Connection string",
                required=True,
                placeholder="host=db.internal dbname=app user=profilesync",
                help="A libpq connection string or postgresql:// URL; the server needs wal_level = logical.",
            ),
            Field("password", "Password", secret=True, help="Kept encrypted; never shown again."),
        ),
    ),
    Kind(
        "ducklake",
        "DuckLake",
        "CDC through table_changes between DuckLake snapshots.",
        (
            Field(
                "catalog",
                "Catalog",
                required=True,
                placeholder="/data/lake.ducklake or postgres:dbname=lake",
            ),
            Field("data_path", "Data path", placeholder="/data/lake_files"),
        ),
    ),
    Kind(
        "duckdb",
        "DuckDB file",
        "A DuckDB database file; synced by snapshot diff.",
        (Field("path", "Database file", required=True, placeholder="/data/warehouse.duckdb"),),
    ),
    Kind(
        "snowflake",
        "Snowflake",
        "CDC with CHANGES on tables with CHANGE_TRACKING = TRUE.",
        (
            Field("account", "Account", required=True, placeholder="myorg-myaccount"),
            Field("user", "User", required=True),
            Field("password", "Password", secret=True, help="Or a key pair below."),
            Field(
                "private_key",
                "Private key (PEM)",
                secret=True,
                multiline=True,
                help="For key-pair authentication. Kept encrypted; never shown again.",
            ),
            Field("private_key_file", "Private key file", placeholder="/secure/rsa_key.p8"),
            Field("private_key_passphrase", "Private key passphrase", secret=True),
            Field("warehouse", "Warehouse"),
            Field("role", "Role"),
            Field("database", "Database", required=True),
            Field("schema", "Schema", placeholder="PUBLIC"),
        ),
    ),
    Kind(
        "databricks",
        "Databricks SQL",
        "CDC with table_changes on tables with the change data feed on.",
        (
            Field("server_hostname", "Server hostname", required=True),
            Field("http_path", "HTTP path", required=True, placeholder="/sql/1.0/warehouses/..."),
            Field("access_token", "Access token", required=True, secret=True),
            Field("catalog", "Catalog", required=True, placeholder="main"),
            Field("schema", "Schema", placeholder="default"),
        ),
    ),
)
KIND_FORMS = {k.kind: k for k in _KINDS}


def kind_form(kind: str) -> Kind:
    """The form of ``kind``; a kind without one gets a single free-form settings field."""
    if kind in KIND_FORMS:
        return KIND_FORMS[kind]
    if kind not in KINDS:
        raise ConfigurationError(
            f"unknown connection kind {kind!r}: choose one of {', '.join(sorted(KINDS))}"
        )
    return Kind(kind, kind, "", ())


def kind_info(kind: str) -> dict[str, Any]:
    """A kind's form plus what its source class can do (or why it is unavailable)."""
    form = kind_form(kind)
    try:
        cls = source_class(kind)
        available, reason = True, None
        supports_cdc = bool(cls.supports_cdc)
        declared = set(getattr(cls, "secret_fields", ()))
    except (ConfigurationError, ImportError) as exc:
        available, reason, supports_cdc, declared = False, str(exc), False, set()
    fields = [{**f.__dict__, "secret": f.secret or f.name in declared} for f in form.fields]
    return {
        "kind": kind,
        "label": form.label,
        "blurb": form.blurb,
        "available": available,
        "unavailable_reason": reason,
        "supports_cdc": supports_cdc,
        "fields": fields,
    }


def all_kinds() -> list[dict[str, Any]]:
    order = [k.kind for k in _KINDS] + [k for k in KINDS if k not in KIND_FORMS]
    return [kind_info(k) for k in order if k in KINDS]
