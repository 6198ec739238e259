"""Secret connection settings are encrypted in the store file, for the CLI as for the server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from profilesync.errors import ConfigurationError
from profilesync.model import Connection
from profilesync.secrets import KEY_ENV, public_config, redact, seal, unseal
from profilesync.store.duckdb import DuckDBStore
from tests.conftest import Cli

SECRET = "s3cr3t-Value-42"
DATABRICKS = {
    "server_hostname": "adb-1.azuredatabricks.net",
    "http_path": "/sql/1.0/warehouses/abc",
    "access_token": SECRET,
    "catalog": "main",
}


def store_bytes(home: Path) -> bytes:
    return b"".join(
        p.read_bytes() for p in home.iterdir() if p.name.startswith("profilesync.duckdb")
    )


def test_store_encrypts_and_the_cli_never_prints_secrets(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with DuckDBStore(home) as store:
        store.add_connection(Connection("dbx", "databricks", DATABRICKS))
        assert store.get_connection("dbx").config == DATABRICKS
        assert store.list_connections()[0].config["access_token"] == SECRET
    assert SECRET.encode() not in store_bytes(home)
    listed = Cli(home, tmp_path).json("connection", "list")
    assert listed[0]["config"] == {k: v for k, v in DATABRICKS.items() if k != "access_token"}
    assert SECRET not in json.dumps(listed)


def test_seal_round_trip_and_what_counts_as_secret(tmp_path: Path) -> None:
    config = {
        "path": "/data",
        "password": SECRET,
        "dsn": f"postgresql://me:{SECRET}@db/app",
        "empty": "",
    }
    sealed = seal(tmp_path, "delta", config)
    assert sealed["path"] == "/data" and sealed["empty"] == ""
    assert SECRET not in json.dumps(sealed)
    assert seal(tmp_path, "delta", sealed) == sealed  # sealing twice changes nothing
    assert unseal(tmp_path, "c", sealed) == config
    assert public_config("delta", config) == {
        "path": "/data",
        "dsn": "postgresql://me:***@db/app",
        "empty": "",
    }
    assert redact("host=db password='a b' user=x") == "host=db password=*** user=x"


def test_the_key_can_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptography.fernet import Fernet

    monkeypatch.setenv(KEY_ENV, Fernet.generate_key().decode())
    sealed = seal(tmp_path, "databricks", DATABRICKS)
    assert not (tmp_path / "secret.key").exists()
    assert unseal(tmp_path, "dbx", sealed)["access_token"] == SECRET
    monkeypatch.setenv(KEY_ENV, Fernet.generate_key().decode())  # another key
    with pytest.raises(ConfigurationError, match="cannot be decrypted"):
        unseal(tmp_path, "dbx", sealed)
