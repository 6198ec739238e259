"""Secret connection settings: write-only for users, encrypted at rest, redacted by parsing.

A connection's secret fields (each kind's config spec marks them ``secret``; any key
naming a password, token, secret or private key counts too) are stored as Fernet tokens
``{"$fernet": "..."}`` inside the connection's JSON and never shown. Any other string
setting is *parsed* to find secrets embedded in it, never pattern-matched:

- libpq connection strings (``host=db password=... sslpassword=...``, also after a
  ``postgres:`` prefix as in a DuckLake catalog) go through libpq's own parser (psycopg's
  ``conninfo_to_dict``); the secret keywords are :data:`LIBPQ_SECRET_KEYS` plus every
  keyword the installed libpq marks as a password field;
- URLs (``postgresql://user:pw@host/db?sslpassword=...``, ``https://user:pw@host``) are
  split by RFC 3986 structure, taking the userinfo up to the *last* ``@`` of the authority,
  so a password with a raw ``@`` or ``:`` is hidden whole; secret query parameters too.

A setting that embeds a secret is encrypted whole and shown with only the secrets replaced
by ``***``. What cannot be parsed (psycopg not installed, a string libpq refuses) fails
closed: if it assigns anything that looks like a secret, it is encrypted and shown as
``***``. The key never lives in the store file: it is ``PROFILESYNC_SECRET_KEY`` when set,
else ``<home>/secret.key``, created with mode 0600 the first time a secret is saved.
Lose the key and the secrets must be entered again; the rest of the store is unaffected.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from profilesync.errors import ConfigurationError, MissingDependencyError

KEY_ENV = "PROFILESYNC_SECRET_KEY"
KEY_FILE = "secret.key"
MARK = "$fernet"
HIDDEN = "***"
#: libpq keywords whose values are secrets, whatever libpq version is installed (the SCRAM
#: keys are credential-equivalent though libpq marks them only as debug options)
LIBPQ_SECRET_KEYS = frozenset(
    {"password", "sslpassword", "oauth_client_secret", "scram_client_key", "scram_server_key"}
)
#: query parameters of other URLs that carry a credential (pre-signed and SAS URLs)
_URL_SECRET_PARAMS = frozenset({"sig", "signature", "x-amz-signature", "x-goog-signature"})
_SECRET_NAME = re.compile(
    r"password|passwd|pwd|passphrase|token|secret|private_key|api_key|credential", re.I
)
#: something that looks like a secret being assigned, in text no parser could read
_ASSIGNED = re.compile(
    r"(pass|pwd|secret|token|private|credential|scram|api_?key)[\w%.-]*\s*=\s*(?!\*\*\*|&|\s|$)",
    re.I,
)
_PG_PREFIX = re.compile(r"(?:ducklake:)?(?:postgres|postgresql|pg):(?!//)", re.I)
_PG_URI = re.compile(r"postgres(?:ql)?://", re.I)
_URL = re.compile(r"[a-z][a-z0-9+.-]*://", re.I)
_CONNINFO = re.compile(r"\s*[A-Za-z_]\w*\s*=")


def _declared_none(kind: str) -> tuple[str, ...]:
    return ()


#: kind -> the settings its config spec declares secret. The warehouse registry installs
#: it when imported (this module sits below the warehouses and cannot import them).
_declared: Callable[[str], tuple[str, ...]] = _declared_none


def declare_secret_fields(lookup: Callable[[str], tuple[str, ...]]) -> None:
    """Install where a kind's declared secret settings come from (its config spec)."""
    global _declared
    _declared = lookup


def secret_fields(kind: str, config: dict[str, Any] | None = None) -> tuple[str, ...]:
    """The keys of ``config`` (or the kind's declared ones) that are secrets.

    A key is secret when the kind's spec declares it so, or when its name says so
    (password, token, secret, private key, ...), whatever the kind.
    """
    named = [k for k in config or {} if _SECRET_NAME.search(k)]
    return tuple(dict.fromkeys([*_declared(kind), *named]))


def redact(value: Any) -> Any:
    """``value`` as it may be shown: a string's embedded secrets replaced by ``***``."""
    return _inspect(value).shown if isinstance(value, str) else value


def embeds_secret(value: Any) -> bool:
    """Whether a string setting carries a secret inside it (a DSN's password, ...)."""
    return isinstance(value, str) and _inspect(value).secret


def public_config(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """What may be shown of a connection: no secret field, embedded secrets redacted."""
    hidden = set(secret_fields(kind, config))
    return {k: redact(v) for k, v in config.items() if k not in hidden}


_PIECES = re.compile(r"[@:/?#&=%\s]+")


def scrub(text: str, kind: str, config: dict[str, Any]) -> str:
    """``text`` (an error message) with every secret of ``config`` replaced by ``***``:
    drivers quote connection strings in their errors, and errors are stored and shown."""
    hidden = set(secret_fields(kind, config))
    values = {str(v) for k, v in config.items() if k in hidden and v not in (None, "")}
    for value in config.values():
        if isinstance(value, str):
            values.update(_inspect(value).values)
    # a password with a raw ``@`` or ``:`` is mis-read by libpq, which then names its
    # pieces as a host or a port: hide every piece too
    values.update(p for v in list(values) for p in _PIECES.split(v) if len(p) >= 4)
    for value in sorted(values, key=len, reverse=True):  # a whole DSN before its password
        for form in (value, quote(value, safe="")):
            if len(form) >= 3:
                text = text.replace(form, HIDDEN)
    return text


# -- parsing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Seen:
    """A setting as it may be shown, and the secret values found in it."""

    shown: str
    values: tuple[str, ...] = ()

    @property
    def secret(self) -> bool:
        return bool(self.values)


def _opaque(text: str) -> _Seen:
    """What no parser could read but may hold a secret: hidden whole."""
    return _Seen(HIDDEN, (text,))


def _inspect(text: str) -> _Seen:
    """Parse ``text`` as whatever it is (libpq string, URL, plain value) and redact it."""
    prefix_match = _PG_PREFIX.match(text)
    prefix = prefix_match.group(0) if prefix_match else ""
    rest = text[len(prefix) :]
    if _URL.match(rest):
        seen = _url(rest, libpq=bool(_PG_URI.match(rest)))
    elif prefix or _CONNINFO.match(rest):
        seen = _conninfo(rest)
    else:
        seen = _Seen(rest)
    if _ASSIGNED.search(seen.shown):  # something no parser understood: fail closed
        seen = _opaque(rest)
    return _Seen(prefix + seen.shown, seen.values) if seen.secret else _Seen(text)


def _conninfo(text: str) -> _Seen:
    """A libpq ``key=value`` string, read by libpq itself and written back with the secret
    values replaced (the user's keyword order, libpq's quoting)."""
    parsed = _libpq_parse(text)
    if parsed is None:
        return _opaque(text) if _ASSIGNED.search(text) else _Seen(text)
    secret = {k: v for k, v in parsed.items() if k in _libpq_secret_keys() and v}
    if not secret:
        return _Seen(text)
    from psycopg.conninfo import make_conninfo

    keys = sorted(parsed, key=lambda k: _position(text, k))  # as the user wrote them
    shown = make_conninfo("", **{k: HIDDEN if k in secret else parsed[k] for k in keys})
    return _Seen(shown, tuple(secret.values()))


def _position(text: str, keyword: str) -> int:
    """Where ``keyword=`` first appears in ``text`` (only to keep the user's order)."""
    found = re.search(rf"(?<!\w){re.escape(keyword)}\s*=", text)
    return found.start() if found else len(text)


def _url(text: str, *, libpq: bool) -> _Seen:
    """A URL with its userinfo password and secret query parameters hidden.

    The userinfo runs to the last ``@`` before the path, so a raw ``@`` or ``:`` in a
    password hides it whole (libpq would stop at the first ``@``); an ``@`` left in the path
    means a mis-encoded password: hidden whole. For ``postgresql://`` URIs libpq's own
    reading is checked too: no secret it sees may be left in view."""
    scheme, _, after = text.partition("://")
    slash = after.find("/")
    authority, tail = (after, "") if slash < 0 else (after[:slash], after[slash:])
    userinfo, at, host = authority.rpartition("@")
    path, question, query = (host + tail).partition("?")
    if "@" in path:
        return _Seen(f"{scheme}://{HIDDEN}", (text,))
    found: list[str] = []
    if at and ":" in userinfo:
        user, _, password = userinfo.partition(":")
        userinfo, found = f"{user}:{HIDDEN}", [password, unquote(password)]
    params = []
    for param in query.split("&") if question else []:
        key, equals, value = param.partition("=")
        if equals and value and _is_secret_param(unquote(key).lower(), libpq=libpq):
            param = f"{key}={HIDDEN}"
            found += [value, unquote(value)]
        params.append(param)
    shown = f"{scheme}://{userinfo}{at}{path}{question}{'&'.join(params)}"
    parsed = (_libpq_parse(text) if libpq else None) or {}
    seen = [v for k, v in parsed.items() if k in _libpq_secret_keys() and v]
    if any(len(v) >= 3 and (v in shown or quote(v, safe="") in shown) for v in seen):
        return _Seen(f"{scheme}://{HIDDEN}", (text,))
    return _Seen(shown, tuple(dict.fromkeys(found + seen)))


def _is_secret_param(name: str, *, libpq: bool) -> bool:
    if libpq and name in _libpq_secret_keys():
        return True
    return name in _URL_SECRET_PARAMS or bool(_SECRET_NAME.search(name))


def _libpq_parse(text: str) -> dict[str, str] | None:
    """libpq's reading of a connection string; None when psycopg (an optional extra) is not
    installed or libpq refuses the string: the caller then fails closed."""
    try:
        from psycopg import ProgrammingError
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:
        return None
    try:
        return {k: str(v) for k, v in conninfo_to_dict(text).items()}
    except ProgrammingError:
        return None


@functools.cache
def _libpq_secret_keys() -> frozenset[str]:
    """:data:`LIBPQ_SECRET_KEYS` and every keyword the installed libpq displays as ``*``."""
    try:
        from psycopg import pq
    except ImportError:
        return LIBPQ_SECRET_KEYS
    marked = {o.keyword.decode() for o in pq.Conninfo.get_defaults() if o.dispchar == b"*"}
    return LIBPQ_SECRET_KEYS | marked


# -- sealing -------------------------------------------------------------------------------


def seal(home: Path, kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """``config`` as it is stored: secret values (and strings embedding one) encrypted."""
    hidden = set(secret_fields(kind, config))
    sealed: dict[str, Any] = {}
    for key, value in config.items():
        plain = value not in (None, "") and not _is_sealed(value)
        if plain and (key in hidden or embeds_secret(value)):
            token = _fernet(home, create=True).encrypt(str(value).encode()).decode()
            value = {MARK: token}
        sealed[key] = value
    return sealed


def unseal(home: Path, name: str, config: dict[str, Any]) -> dict[str, Any]:
    """The stored ``config`` with its secrets decrypted, for the source that connects."""
    if not any(_is_sealed(v) for v in config.values()):
        return config
    fernet = _fernet(home, create=False, connection=name)
    from cryptography.fernet import InvalidToken

    try:
        return {
            k: fernet.decrypt(v[MARK].encode()).decode() if _is_sealed(v) else v
            for k, v in config.items()
        }
    except InvalidToken:
        raise ConfigurationError(
            f"the secrets of connection {name!r} cannot be decrypted with the key in use "
            f"({_key_origin(home)}): restore the key they were saved with, or delete the "
            "connection and add it again"
        ) from None


def _is_sealed(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {MARK}


def _key_origin(home: Path) -> str:
    return f"env {KEY_ENV}" if os.environ.get(KEY_ENV) else str(home / KEY_FILE)


def _fernet(home: Path, *, create: bool, connection: str = "") -> Any:
    try:
        from cryptography.fernet import Fernet
    except ImportError:
        raise MissingDependencyError("cryptography", "server") from None
    key = load_key(home, create=create)
    if key is None:
        raise ConfigurationError(
            f"connection {connection!r} has encrypted secrets but no key was found "
            f"({home / KEY_FILE} is missing and {KEY_ENV} is not set): restore the key file, "
            "or delete the connection and add it again"
        )
    try:
        return Fernet(key)
    except ValueError:
        raise ConfigurationError(
            f"the secret key in {_key_origin(home)} is not a valid Fernet key "
            "(32 url-safe base64-encoded bytes)"
        ) from None


def load_key(home: Path, *, create: bool) -> bytes | None:
    """The Fernet key from the environment or ``<home>/secret.key`` (made 0600 if asked)."""
    env = os.environ.get(KEY_ENV)
    if env:
        return env.strip().encode()
    path = Path(home) / KEY_FILE
    if path.exists():
        return path.read_bytes().strip()
    if not create:
        return None
    from cryptography.fernet import Fernet

    key: bytes = Fernet.generate_key()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as f:
        f.write(key + b"\n")
    return key
