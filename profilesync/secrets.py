"""Secret connection settings: write-only for users, encrypted at rest.

A connection's secret fields (each source class lists them in ``secret_fields``; any key
naming a password, token, secret or private key counts too) are stored as Fernet tokens
``{"$fernet": "..."}`` inside the connection's JSON. A connection string that embeds a
password (``postgresql://user:pw@host/db``, ``password=...``) is encrypted whole and shown
redacted. The key never lives in the store file: it is ``PROFILESYNC_SECRET_KEY`` when set,
else ``<home>/secret.key``, created with mode 0600 the first time a secret is saved.
Lose the key and the secrets must be entered again; the rest of the store is unaffected.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from profilesync.errors import ConfigurationError, MissingDependencyError

KEY_ENV = "PROFILESYNC_SECRET_KEY"
KEY_FILE = "secret.key"
MARK = "$fernet"
_SECRET_NAME = re.compile(r"password|passphrase|token|secret|private_key|api_key", re.I)
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)([^@\s]+)(@)")
_KV_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('[^']*'|\S+)", re.I)


def secret_fields(kind: str, config: dict[str, Any] | None = None) -> tuple[str, ...]:
    """The keys of ``config`` (or the kind's declared ones) that are secrets."""
    from profilesync.sources import source_class

    try:
        declared = tuple(getattr(source_class(kind), "secret_fields", ()))
    except (ConfigurationError, ImportError):
        declared = ()
    named = [k for k in config or {} if _SECRET_NAME.search(k)]
    return tuple(dict.fromkeys([*declared, *named]))


def redact(value: Any) -> Any:
    """A connection string with its embedded password replaced by ``***``."""
    if not isinstance(value, str):
        return value
    return _KV_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***\3", value))


def public_config(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """What may be shown of a connection: no secret field, embedded passwords redacted."""
    hidden = set(secret_fields(kind, config))
    return {k: redact(v) for k, v in config.items() if k not in hidden}


def seal(home: Path, kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """``config`` as it is stored: secret values (and strings embedding one) encrypted."""
    hidden = set(secret_fields(kind, config))
    sealed: dict[str, Any] = {}
    for key, value in config.items():
        plain = value not in (None, "") and not _is_sealed(value)
        if plain and (key in hidden or redact(value) != value):
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
