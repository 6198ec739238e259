"""No connection secret is ever shown or stored in clear, whatever the kind and channel.

Connections carrying every secret of every kind are saved through the CLI and through the
API; then every API answer, every page, ``connection list`` and the raw bytes of every
file of the home (except the key) are searched for each secret. The secrets still work:
what the store gives back to the source that connects equals what was entered.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest
from fastapi.routing import iter_route_contexts

from profilesync import secrets
from profilesync.secrets import HIDDEN, embeds_secret, public_config, redact, scrub, seal, unseal
from profilesync.store.duckdb import DuckDBStore
from tests.conftest import Cli
from tests.server.conftest import serving

PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvSfPrivKey14Body\n-----END PRIVATE KEY-----\n"
#: a URL password with a raw ``@``, a raw ``:`` and an encoded ``%40``: every piece is secret
URL_PASSWORD = "Ur1Lead@Pa55Mid:Tail%40wd06"
LIBPQ_SECRETS = {
    "password": "Pg Kv Pass01",
    "sslpassword": "PgKvSsl02",
    "oauth_client_secret": "PgKvOauth03",
    "scram_client_key": "PgKvScramC04",
    "scram_server_key": "PgKvScramS05",
}
KV_DSN = "host=127.0.0.1 port=1 dbname=app user=me " + " ".join(
    f"{k}='{v}'" for k, v in LIBPQ_SECRETS.items()
)
URI_DSN = f"postgresql://me:{URL_PASSWORD}@127.0.0.1:1/app?sslpassword=UriSsl07&sslmode=prefer"
#: kind -> settings, each carrying every secret the kind accepts
CONNECTIONS: dict[str, tuple[str, dict[str, str]]] = {
    "pg-kv": ("postgres", {"dsn": KV_DSN, "password": "PwField08"}),
    "pg-uri": ("postgres", {"dsn": URI_DSN}),
    "lake-kv": (
        "ducklake",
        {
            "catalog": "postgres:dbname=lake host=127.0.0.1 port=1 password=DlKvPass09 "
            "sslpassword=DlKvSsl10",
            "data_path": "s3://bucket/lake",
        },
    ),
    "lake-uri": (
        "ducklake",
        {"catalog": "postgres:postgresql://me:DlUriPass11@127.0.0.1:1/lake?sslpassword=DlUriSsl12"},
    ),
    "sf-password": (
        "snowflake",
        {"account": "org-acct", "user": "svc", "database": "DB", "password": "SfPass13"},
    ),
    "sf-keypair": (
        "snowflake",
        {
            "account": "org-acct",
            "user": "svc",
            "database": "DB",
            "private_key": PEM,
            "private_key_passphrase": "SfPhrase15",
        },
    ),
    "dbx": (
        "databricks",
        {
            "server_hostname": "adb-1.azuredatabricks.net",
            "http_path": "/sql/1.0/warehouses/a",
            "access_token": "dapiDbxToken16",
            "catalog": "main",
        },
    ),
}
#: secrets some kinds refuse as unknown settings: the refusal must not echo them either
REFUSED = {"snowflake": {"token": "SfToken17"}, "databricks": {"client_secret": "DbxClient18"}}
SECRETS = [
    *LIBPQ_SECRETS.values(),
    URL_PASSWORD,
    *re.split(r"[@:]", URL_PASSWORD),
    "UriSsl07",
    "PwField08",
    "DlKvPass09",
    "DlKvSsl10",
    "DlUriPass11",
    "DlUriSsl12",
    "SfPass13",
    "MIIEvSfPrivKey14Body",
    "SfPhrase15",
    "dapiDbxToken16",
    "SfToken17",
    "DbxClient18",
]


def forms(secret: str) -> set[str]:
    """A secret as it could appear: as entered, percent-decoded or -encoded."""
    return {secret, unquote(secret), quote(secret, safe=""), quote(secret)}


def assert_no_secret(text: str | bytes, where: str) -> None:
    for secret in SECRETS:
        for form in forms(secret):
            needle = form.encode() if isinstance(text, bytes) else form
            assert needle not in text, f"{form!r} shown in {where}"


def cli_add(cli: Cli, name: str, kind: str, config: dict[str, str]) -> None:
    args = ["connection", "add", name, "--kind", kind, "--no-check"]
    for key, value in config.items():
        flag = {"dsn": "--dsn", "catalog": "--catalog", "data_path": "--data-path"}.get(key)
        args += [flag, value] if flag else ["-o", f"{key}={value}"]
    proc = cli.ok(*args)
    assert_no_secret(proc.stdout + proc.stderr, f"`connection add {name}`")


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "home"


def test_no_secret_is_shown_or_stored_in_clear(home: Path, tmp_path: Path) -> None:
    cli = Cli(home, tmp_path)
    for name, (kind, config) in CONNECTIONS.items():
        cli_add(cli, f"cli-{name}", kind, config)
    for kind, extra in REFUSED.items():
        base = next(c for k, c in CONNECTIONS.values() if k == kind)
        proc = cli(
            "connection",
            "add",
            "x",
            "--kind",
            kind,
            "--no-check",
            *[f"-o{k}={v}" for k, v in {**base, **extra}.items()],
        )
        assert proc.returncode != 0
        assert_no_secret(proc.stdout + proc.stderr, f"refused {kind} connection")
    with serving(home) as served:
        for name, (kind, config) in CONNECTIONS.items():
            body = {"name": f"api-{name}", "kind": kind, "config": config}
            tried = served.api.post("/api/connections", json=body)  # no server here: refused
            assert tried.status_code >= 400, tried.text
            assert_no_secret(tried.text, f"refused POST /api/connections {name}")
            resp = served.api.post("/api/connections", json={**body, "save_anyway": True})
            assert resp.status_code == 201, resp.text
            assert_no_secret(resp.text, f"POST /api/connections {name}")
        patched = served.api.patch(
            "/api/connections/api-dbx",
            json={
                "config": {
                    "server_hostname": "adb-2.azuredatabricks.net",
                    "http_path": "/sql/1.0/warehouses/b",
                    "catalog": "main",
                },
                "save_anyway": True,
            },
        )
        assert patched.status_code == 200, patched.text
        for kind, extra in REFUSED.items():
            base = next(c for k, c in CONNECTIONS.values() if k == kind)
            resp = served.api.post(
                "/api/connections", json={"name": "x", "kind": kind, "config": {**base, **extra}}
            )
            assert resp.status_code == 422
            assert_no_secret(resp.text, f"refusal of {kind}")
        for where, text in every_answer(served):
            assert_no_secret(text, where)
        shown = served.api.get("/api/connections/api-pg-uri").json()["config"]["dsn"]
        assert shown == "postgresql://me:***@127.0.0.1:1/app?sslpassword=***&sslmode=prefer"
    listed = cli("connection", "list", "--json")
    assert listed.returncode == 0 and "api-pg-kv" in listed.stdout
    assert_no_secret(listed.stdout, "`connection list --json`")
    assert_no_secret(cli.ok("connection", "list").stdout, "`connection list`")
    for path in sorted(p for p in home.rglob("*") if p.is_file() and p.name != "secret.key"):
        assert_no_secret(path.read_bytes(), str(path.relative_to(home)))
    with DuckDBStore(home) as store:  # what the source that connects is given
        for name, (_, config) in CONNECTIONS.items():
            for channel in ("cli", "api"):
                if f"{channel}-{name}" == "api-dbx":
                    continue
                stored = store.get_connection(f"{channel}-{name}").config
                for key, value in config.items():
                    assert stored[key] == value, (channel, name, key)
        assert store.get_connection("api-dbx").config["access_token"] == "dapiDbxToken16"


def every_answer(served: Any) -> Iterator[tuple[str, str]]:
    """Every API answer a GET without parameters gives, every connection and source
    route, and every page (from ``app.routes``, so a new one is searched too)."""
    plain = [
        route.path
        for route in iter_route_contexts(served.app.routes)
        if "GET" in (route.methods or ()) and "{" not in route.path
    ]
    assert "/api/connections" in plain and "/" in plain
    names = [c["name"] for c in served.api.get("/api/connections").json()]
    assert len(names) == 2 * len(CONNECTIONS)
    paths = plain + [f"/api/connections/{n}" for n in names]
    paths += ["/sources/new?kind=postgres", "/sources/new?kind=snowflake"]
    for path in paths:
        client = served.api if path.startswith("/api") or path == "/openapi.json" else served.ui
        resp = client.get(path)
        assert resp.status_code < 500, (path, resp.status_code)
        yield f"GET {path}", resp.text


def test_every_secret_libpq_keyword_is_sealed_and_redacted(tmp_path: Path) -> None:
    from psycopg import pq

    marked = {o.keyword.decode() for o in pq.Conninfo.get_defaults() if o.dispchar == b"*"}
    assert marked <= set(LIBPQ_SECRETS) <= secrets._libpq_secret_keys()
    for dsn in (KV_DSN, URI_DSN, f"postgres:{KV_DSN}", f"postgres:{URI_DSN}"):
        assert embeds_secret(dsn)
        assert_no_secret(redact(dsn), f"redact({dsn!r})")
        assert "127.0.0.1" in redact(dsn) and HIDDEN in redact(dsn)  # the rest stays shown
        config = {"dsn": dsn, "catalog": dsn}
        sealed = seal(tmp_path, "postgres", config)
        assert_no_secret(repr(sealed), "sealed config")
        assert unseal(tmp_path, "c", sealed) == config
        assert_no_secret(repr(public_config("ducklake", config)), "public config")
    for keyword in sorted(LIBPQ_SECRETS):  # one at a time, in both syntaxes
        for dsn in (f"host=db {keyword}=Alone99", f"postgresql://db/app?{keyword}=Alone99"):
            assert "Alone99" not in redact(dsn) and embeds_secret(dsn), dsn


def test_url_passwords_with_at_colon_and_percent(tmp_path: Path) -> None:
    for url in (
        f"postgresql://me:{URL_PASSWORD}@db:5432/app",
        f"postgres://me:{URL_PASSWORD}@h1:1,h2:2/app",
        f"https://me:{URL_PASSWORD}@files.example/lake?sig=SigSecret1&x=1",
    ):
        shown = redact(url)
        assert_no_secret(shown, url)
        assert "SigSecret1" not in shown and shown.startswith(url.split("://")[0])
        assert unseal(tmp_path, "c", seal(tmp_path, "delta", {"u": url})) == {"u": url}
    assert redact("postgresql://me@db/app") == "postgresql://me@db/app"  # nothing to hide
    assert not embeds_secret("host=db sslmode=require sslkey=/keys/client.key")


def test_without_psycopg_strings_fail_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    """psycopg is an optional extra: without libpq's parser, a connection string that may
    hold a secret is hidden whole rather than guessed at; URLs need no libpq."""
    monkeypatch.setitem(sys.modules, "psycopg", None)
    monkeypatch.setitem(sys.modules, "psycopg.conninfo", None)
    secrets._libpq_secret_keys.cache_clear()
    try:
        assert redact(KV_DSN) == HIDDEN and embeds_secret(KV_DSN)
        assert redact("postgres:dbname=x sslpassword=Q1w2e3") == f"postgres:{HIDDEN}"
        assert_no_secret(redact(URI_DSN), "URI without psycopg")
        assert "127.0.0.1:1/app" in redact(URI_DSN)
        assert redact("host=db sslmode=require") == "host=db sslmode=require"
    finally:
        secrets._libpq_secret_keys.cache_clear()


def test_scrub_removes_secrets_from_driver_messages() -> None:
    config = CONNECTIONS["lake-kv"][1]
    message = 'Unable to connect to Postgres at "dbname=lake password=DlKvPass09": refused'
    assert "DlKvPass09" not in scrub(message, "ducklake", config)
    uri = {"dsn": URI_DSN, "password": "PwField08"}
    text = scrub(f"bad {URI_DSN} / {unquote(URL_PASSWORD)} / PwField08", "postgres", uri)
    assert_no_secret(text, "scrubbed message")


def test_warehouse_errors_do_not_echo_secrets(home: Path) -> None:
    """Opening each connection fails here (no server): the errors shown must not carry
    the secrets (the wizard's table step and the tables route open the warehouse)."""
    with serving(home) as served:
        for name, (kind, config) in CONNECTIONS.items():
            resp = served.api.post(
                "/api/connections",
                json={"name": name, "kind": kind, "config": config, "save_anyway": True},
            )
            assert resp.status_code == 201, resp.text
        for name in CONNECTIONS:
            tables = served.api.get(f"/api/connections/{name}/tables")
            assert_no_secret(tables.text, f"GET /api/connections/{name}/tables")
            page = served.ui.get(f"/sources/new?connection={name}")
            assert_no_secret(page.text, f"GET /sources/new?connection={name}")
