"""Which backend a home keeps its profiles and events in: named, parsed, recorded, checked.

A backend is named with ``--store`` (or ``PROFILESYNC_STORE``, or to
:func:`profilesync.store.open_store`):

- ``duckdb`` (the default): everything in the home's DuckDB file;
- ``chdb``: profiles and events in ClickHouse inside the process, its data under
  ``<home>/clickhouse``; the catalog (connections, sources, checkpoints, runs, usage,
  projects) in the home's DuckDB file;
- ``clickhouse://user[:password]@host[:port]/database[?cluster=NAME&secure=1]``: profiles
  and events on a ClickHouse server over HTTP (port 8123, 8443 with ``secure``); with
  ``cluster``, replicated tables on every node of the cluster with distributed tables
  over them. The password comes from the URL or ``PROFILESYNC_CLICKHOUSE_PASSWORD``.

A home records its backend the first time a store is opened on it (the catalog setting
``store_backend``; a server by its URL without the password, which is sealed in the
catalog as connection secrets are) and refuses another one from then on: ``--store`` is
needed only when a home is made. A home from before backends were recorded is duckdb's
when it holds anything (connections, sources, projects).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

from profilesync.errors import ConfigurationError
from profilesync.secrets import seal, unseal

#: the catalog setting naming the backend a home was created with
BACKEND_SETTING = "store_backend"
#: the catalog setting holding a server's password, sealed
SECRET_SETTING = "store_backend_secret"
#: the environment variable naming the backend, as ``--store`` does
STORE_ENV = "PROFILESYNC_STORE"
PASSWORD_ENV = "PROFILESYNC_CLICKHOUSE_PASSWORD"
CHOICES = "duckdb, chdb or clickhouse://user@host:8123/database"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPTIONS = frozenset({"cluster", "secure"})


class _Catalog(Protocol):
    """What the check reads of a store's catalog."""

    def get_setting(self, key: str, default: str | None = None) -> str | None: ...
    def set_setting(self, key: str, value: str | None) -> None: ...
    def list_sources(self) -> Sequence[object]: ...
    def list_connections(self) -> Sequence[object]: ...


@dataclass(frozen=True)
class ServerURL:
    """A ClickHouse server (or cluster) as ``clickhouse://`` names it."""

    host: str
    port: int
    database: str
    user: str = "default"
    password: str = ""
    cluster: str | None = None
    secure: bool = False

    @property
    def name(self) -> str:
        """The URL without the password: what the home records and messages show."""
        options = [f"cluster={self.cluster}"] if self.cluster else []
        options += ["secure=1"] if self.secure else []
        query = "?" + "&".join(options) if options else ""
        return f"clickhouse://{self.user}@{self.host}:{self.port}/{self.database}{query}"


@dataclass(frozen=True)
class Backend:
    """A parsed ``--store``: its kind, and the server of a ``clickhouse://`` URL."""

    kind: Literal["duckdb", "chdb", "clickhouse"]
    server: ServerURL | None = None

    @property
    def name(self) -> str:
        return self.server.name if self.server else self.kind


DUCKDB = Backend("duckdb")


def parse_backend(text: str) -> Backend:
    """``duckdb``, ``chdb`` or a ``clickhouse://`` URL; anything else is refused."""
    value = text.strip()
    if value in ("duckdb", "chdb"):
        return Backend(value)  # type: ignore[arg-type]
    if value.lower().startswith("clickhouse://"):
        return Backend("clickhouse", parse_url(value))
    raise ConfigurationError(f"unknown store backend {text!r}: choose {CHOICES}")


def parse_url(text: str) -> ServerURL:
    """A ``clickhouse://user[:password]@host[:port]/database[?cluster=NAME&secure=1]``."""
    shown = re.sub(r"(//[^/@:]*):[^/@]*@", r"\1:***@", text)  # never echo a password
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(f"store URL {shown}: {exc}") from None
    if not parts.hostname:
        raise ConfigurationError(
            f"store URL {shown} names no host: clickhouse://user@host:8123/database"
        )
    database = parts.path.strip("/") or "default"
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    if unknown := sorted(set(options) - _OPTIONS):
        raise ConfigurationError(
            f"store URL {shown}: unknown option {unknown[0]!r} (known: cluster, secure)"
        )
    cluster = options.get("cluster") or None
    for what, name in (("database", database), ("cluster", cluster)):
        if name is not None and not _NAME.fullmatch(name):
            raise ConfigurationError(
                f"store URL {shown}: the {what} {name!r} is not a plain name "
                "(letters, digits and _)"
            )
    secure = options.get("secure", "0").lower() in ("1", "true", "yes")
    return ServerURL(
        host=parts.hostname,
        port=port or (8443 if secure else 8123),
        database=database,
        user=unquote(parts.username) if parts.username else "default",
        password=unquote(parts.password) if parts.password else "",
        cluster=cluster,
        secure=secure,
    )


def recorded(catalog: _Catalog) -> str | None:
    """The backend a home was created with; None for a home that holds nothing yet."""
    name = catalog.get_setting(BACKEND_SETTING)
    if name is None and _holds_anything(catalog):
        return "duckdb"  # a home from before backends were recorded
    return name


def _holds_anything(catalog: _Catalog) -> bool:
    if catalog.list_sources() or catalog.list_connections():
        return True
    events = getattr(catalog, "events", None)
    return bool(events is not None and events.list_projects())


def refuse_other_backend(catalog: _Catalog, home: Path, wanted: Backend) -> None:
    """Refuse a home recorded with another backend than ``wanted``."""
    name = recorded(catalog)
    if name is not None and name != wanted.name:
        raise ConfigurationError(
            f"the store in {home} was created with --store {name}, not {wanted.name}: "
            f"open it with --store {name}, or without --store "
            "(a home keeps the backend it was created with)"
        )


def choose_backend(catalog: _Catalog, home: Path, wanted: Backend | None) -> Backend:
    """The backend to open: ``wanted`` when the home has none or the same one (refused
    otherwise), else the recorded one, else duckdb; a server's password from the URL,
    ``PROFILESYNC_CLICKHOUSE_PASSWORD`` or the sealed one the home keeps."""
    if wanted is not None:
        refuse_other_backend(catalog, home, wanted)
        chosen = wanted
    else:
        name = recorded(catalog)
        chosen = parse_backend(name) if name else DUCKDB
    if chosen.server is None:
        return chosen
    password = chosen.server.password or os.environ.get(PASSWORD_ENV, "")
    if not password:
        password = _stored_password(catalog, home)
    return replace(chosen, server=replace(chosen.server, password=password))


def record_backend(catalog: _Catalog, home: Path, backend: Backend) -> None:
    """Note ``backend`` in a home that has none yet (and a server's password, sealed)."""
    if catalog.get_setting(BACKEND_SETTING) is None and recorded(catalog) is None:
        catalog.set_setting(BACKEND_SETTING, backend.name)
    password = backend.server.password if backend.server else ""
    if password and password != _stored_password(catalog, home):
        sealed = seal(home, "clickhouse", {"password": password})
        catalog.set_setting(SECRET_SETTING, json.dumps(sealed))


def _stored_password(catalog: _Catalog, home: Path) -> str:
    sealed = catalog.get_setting(SECRET_SETTING)
    if not sealed:
        return ""
    return str(unseal(home, "store", json.loads(sealed)).get("password", ""))
