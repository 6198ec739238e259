"""The warehouse registry, the config specs and the old import paths."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from profilesync.errors import ConfigurationError
from profilesync.secrets import secret_fields
from profilesync.warehouses import KINDS, config_spec, validate_config, warehouse_class


def test_old_import_paths_still_work() -> None:
    from profilesync.sources import open_source, opened, source_class
    from profilesync.sources.base import Check, WarehouseSource
    from profilesync.sources.delta import DeltaSource
    from profilesync.warehouses import open_warehouse
    from profilesync.warehouses.delta.warehouse import DeltaWarehouse
    from profilesync.warehouses.protocol import Warehouse

    assert open_source is open_warehouse and source_class("delta") is DeltaWarehouse
    assert DeltaSource is DeltaWarehouse and WarehouseSource is Warehouse
    assert callable(opened) and Check("x", "pass", "").level == "pass"
    for old in ("postgres", "ducklake", "duckdb", "snowflake", "databricks"):
        assert importlib.import_module(f"profilesync.sources.{old}")
    for old in ("deltacommon", "sqlwarehouse"):
        assert importlib.import_module(f"profilesync.sources.{old}")
    from profilesync.sources.duckdb import extension_file, offline_connect, quiet

    assert callable(extension_file) and callable(offline_connect) and callable(quiet)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_has_a_spec_its_class_agrees_with(kind: str) -> None:
    spec = config_spec(kind)
    cls = warehouse_class(kind)
    assert spec.kind == kind == cls.kind
    assert cls.secret_fields == spec.secret_names
    assert set(spec.required_names) <= set(spec.names)
    assert cls.holds_server_resources is (kind == "postgres")
    assert spec.to_json()["fields"][0]["name"] == spec.fields[0].name


def test_secret_fields_come_from_the_spec_and_from_names() -> None:
    assert secret_fields("snowflake") == ("password", "private_key", "private_key_passphrase")
    assert secret_fields("databricks") == ("access_token",)
    assert secret_fields("delta", {"path": "/x", "api_key": "k"}) == ("api_key",)


def test_validation_refuses_missing_and_unknown_settings_by_the_spec() -> None:
    with pytest.raises(ConfigurationError, match="a databricks connection needs http_path"):
        validate_config(
            "databricks",
            {"server_hostname": "h", "access_token": "t", "catalog": "main"},
        )
    with pytest.raises(ConfigurationError, match="unknown snowflake setting"):
        validate_config(
            "snowflake",
            {"account": "a", "user": "u", "database": "d", "password": "p", "colour": "red"},
        )
    with pytest.raises(ConfigurationError, match="needs --path DIR"):
        validate_config("delta", {})
    with pytest.raises(ConfigurationError, match="unknown connection kind"):
        config_spec("oracle")


def test_lenient_kinds_drop_unknown_keys_and_normalise(tmp_path: Path) -> None:
    assert validate_config("delta", {"path": str(tmp_path), "other": 1}) == {
        "path": str(tmp_path.resolve())
    }
    assert validate_config("postgres", {"dsn": "host=db", "password": "", "x": "y"}) == {
        "dsn": "host=db"
    }


def test_the_ui_form_is_rendered_from_the_spec() -> None:
    from profilesync.server.kinds import all_kinds, kind_info

    assert [k["kind"] for k in all_kinds()] == list(KINDS)
    snowflake = kind_info("snowflake")
    fields = {f["name"]: f for f in snowflake["fields"]}
    assert fields["private_key"]["secret"] and fields["private_key"]["multiline"]
    assert snowflake["label"] == config_spec("snowflake").label
