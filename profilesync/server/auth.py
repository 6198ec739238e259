"""Who may use the server: one admin API token and one UI login, both stored hashed.

The token is random (256 bits), so a SHA-256 of it is enough to check it; the UI password
is chosen by a person and is stored with scrypt and a salt. UI sessions live in memory: a
restart logs everyone out, which is the safe default for a single-process server. Failed
logins are counted in memory too (:class:`LoginThrottle`): a restart forgets them, and
several server processes would each count their own.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from profilesync.app import Store
from profilesync.errors import ConfigurationError

ADMIN_USER = "admin"
TOKEN_KEY = "server.admin_token_sha256"
PASSWORD_KEY = "server.admin_password_scrypt"
SESSION_COOKIE = "profilesync_session"
SESSION_SECONDS = 12 * 3600
MIN_PASSWORD = 8
#: failed logins allowed per client address and per user name within LOGIN_WINDOW seconds
LOGIN_ATTEMPTS = 5
LOGIN_WINDOW = 300.0
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str, salt: bytes | None = None) -> str:
    """``scrypt$n$r$p$salt$hash`` (hex), the form :func:`verify_password` reads."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        _, n, r, p, salt, digest = stored.split("$")
        got = hashlib.scrypt(
            password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32
        )
    except ValueError:
        return False
    return hmac.compare_digest(got.hex(), digest)


@dataclass
class Credentials:
    """What :meth:`Auth.bootstrap` created and must be shown once (None: already set)."""

    token: str | None = None
    password: str | None = None
    password_generated: bool = False


@dataclass
class LoginThrottle:
    """Failed logins per client address and per user name, kept in memory.

    After ``limit`` failures within ``window`` seconds for an address or a user name,
    every login attempt for it is refused (the right password too) until the oldest of
    those failures leaves the window: guessing can neither go on at full speed from one
    address nor be spread over many addresses against the one account. Refused attempts
    are not counted, so waiting always ends the block; a successful login clears both
    counters. At most ``max_keys`` addresses and names are remembered (oldest dropped).
    """

    limit: int = LOGIN_ATTEMPTS
    window: float = LOGIN_WINDOW
    clock: Callable[[], float] = time.monotonic
    max_keys: int = 10_000
    _failures: dict[str, deque[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @staticmethod
    def keys(address: str, user: str) -> tuple[str, str]:
        return (f"address:{address}", f"user:{user.strip().lower()}")

    def retry_after(self, address: str, user: str) -> int | None:
        """Seconds until a login from ``address`` as ``user`` may be tried, or None: now."""
        now, waits = self.clock(), []
        with self._lock:
            for key in self.keys(address, user):
                recent = self._recent(key, now)
                if len(recent) >= self.limit:
                    waits.append(recent[-self.limit] + self.window - now)
        return max(1, math.ceil(max(waits))) if waits else None

    def failed(self, address: str, user: str) -> None:
        now = self.clock()
        with self._lock:
            for key in self.keys(address, user):
                recent = self._recent(key, now)
                recent.append(now)
                self._failures[key] = self._failures.pop(key, recent)  # newest last
            while len(self._failures) > self.max_keys:
                del self._failures[next(iter(self._failures))]

    def succeeded(self, address: str, user: str) -> None:
        with self._lock:
            for key in self.keys(address, user):
                self._failures.pop(key, None)

    def _recent(self, key: str, now: float) -> deque[float]:
        """The failures of ``key`` still inside the window (older ones dropped)."""
        recent = self._failures.get(key, deque())
        while recent and recent[0] <= now - self.window:
            recent.popleft()
        if not recent:
            self._failures.pop(key, None)
        return recent


@dataclass
class Auth:
    """The admin token hash, the password hash and the open UI sessions of one app."""

    token_hash: str | None = None
    password_hash: str | None = None
    sessions: dict[str, tuple[str, float]] = field(default_factory=dict)
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def load(cls, store: Store) -> Auth:
        return cls(store.get_setting(TOKEN_KEY), store.get_setting(PASSWORD_KEY))

    # -- setting up ------------------------------------------------------------------
    def issue_token(self, store: Store) -> str:
        """A new admin token (the old one stops working); only its hash is kept."""
        token = "ps_" + secrets.token_urlsafe(32)
        self.token_hash = hash_token(token)
        store.set_setting(TOKEN_KEY, self.token_hash)
        return token

    def set_password(self, store: Store, password: str) -> None:
        if len(password) < MIN_PASSWORD:
            raise ConfigurationError(
                f"the admin password must have at least {MIN_PASSWORD} characters"
            )
        self.password_hash = hash_password(password)
        store.set_setting(PASSWORD_KEY, self.password_hash)
        self.sessions.clear()

    def bootstrap(
        self, store: Store, *, password: str | None = None, new_token: bool = False
    ) -> Credentials:
        """First start: make the token and the login; later starts change only what is asked."""
        made = Credentials()
        if self.token_hash is None or new_token:
            made.token = self.issue_token(store)
        if password is not None:
            self.set_password(store, password)
        elif self.password_hash is None:
            made.password = secrets.token_urlsafe(12)
            made.password_generated = True
            self.set_password(store, made.password)
        return made

    # -- checking --------------------------------------------------------------------
    def check_token(self, token: str) -> bool:
        return self.token_hash is not None and hmac.compare_digest(
            hash_token(token), self.token_hash
        )

    def check_login(self, user: str, password: str) -> bool:
        ok_user = hmac.compare_digest(user.strip(), ADMIN_USER)
        return (
            ok_user
            and self.password_hash is not None
            and verify_password(password, self.password_hash)
        )

    def open_session(self, user: str) -> str:
        sid = secrets.token_urlsafe(32)
        with self._lock:
            self.sessions[sid] = (user, time.monotonic() + SESSION_SECONDS)
        return sid

    def session_user(self, sid: str | None) -> str | None:
        if not sid:
            return None
        with self._lock:
            entry = self.sessions.get(sid)
            if entry is None or entry[1] < time.monotonic():
                self.sessions.pop(sid, None)
                return None
            return entry[0]

    def close_session(self, sid: str | None) -> None:
        with self._lock:
            self.sessions.pop(sid or "", None)
