"""Who may use the server: named users with a role, their API tokens and UI sessions.

Users, passwords (scrypt) and tokens (SHA-256) live in the store (see
:mod:`profilesync.app.users`); every request looks its user up again, so a disabled user's
sessions and tokens stop working at once. UI sessions live in memory: a restart logs
everyone out, which is the safe default for a single-process server. Failed logins are
counted in memory too (:class:`LoginThrottle`): a restart forgets them, and several server
processes would each count their own.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from profilesync.app import Store
from profilesync.app import users as app_users
from profilesync.app.users import ADMIN as ADMIN_USER
from profilesync.app.users import MIN_PASSWORD, User, hash_password, hash_token, verify_password

__all__ = [
    "ADMIN_USER",
    "MIN_PASSWORD",
    "Auth",
    "Credentials",
    "LoginThrottle",
    "hash_password",
    "hash_token",
    "verify_password",
]

SESSION_COOKIE = "profilesync_session"
SESSION_SECONDS = 12 * 3600
#: failed logins allowed per client address and per user name within LOGIN_WINDOW seconds
LOGIN_ATTEMPTS = 5
LOGIN_WINDOW = 300.0


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
    """The open UI sessions and the login throttle of one app; users and tokens are read
    from the store on every request."""

    sessions: dict[str, tuple[str, float]] = field(default_factory=dict)
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    has_login: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def load(cls, store: Store) -> Auth:
        """The app's auth; a home from before users gets its ``admin`` user here."""
        return cls(has_login=app_users.has_login(store))

    @property
    def password_hash(self) -> str | None:
        """Not None once someone can log in (``serve`` makes the first login otherwise)."""
        return "set" if self.has_login else None

    # -- setting up ------------------------------------------------------------------
    def issue_token(self, store: Store) -> str:
        """A new admin token (the one ``serve`` printed before stops working)."""
        return app_users.issue_server_token(store)

    def set_password(self, store: Store, password: str) -> None:
        """The ``admin`` user's password (made if missing); its sessions end."""
        app_users.set_password(store, ADMIN_USER, password)
        self.has_login = True
        self.close_sessions_of(ADMIN_USER)

    def bootstrap(
        self, store: Store, *, password: str | None = None, new_token: bool = False
    ) -> Credentials:
        """First start: make the token and the login; later starts change only what is asked."""
        made = Credentials()
        if new_token or not app_users.has_server_token(store):
            made.token = self.issue_token(store)
        if password is not None:
            self.set_password(store, password)
        elif not app_users.has_login(store):
            made.password = secrets.token_urlsafe(12)
            made.password_generated = True
            self.set_password(store, made.password)
        return made

    # -- checking --------------------------------------------------------------------
    def token_user(self, store: Store, token: str) -> User | None:
        return app_users.token_user(store, token)

    def login(self, store: Store, name: str, password: str) -> User | None:
        return app_users.login(store, name, password)

    def open_session(self, user: str) -> str:
        sid = secrets.token_urlsafe(32)
        with self._lock:
            self.sessions[sid] = (user, time.monotonic() + SESSION_SECONDS)
        return sid

    def session_name(self, sid: str | None) -> str | None:
        """The user name a live session was opened for (not checked against the store)."""
        if not sid:
            return None
        with self._lock:
            entry = self.sessions.get(sid)
            if entry is None or entry[1] < time.monotonic():
                self.sessions.pop(sid, None)
                return None
            return entry[0]

    def session_user(self, store: Store, sid: str | None) -> User | None:
        """The user of a live session, if that user may still act."""
        name = self.session_name(sid)
        user = app_users.active_user(store, name) if name else None
        if name and user is None:
            self.close_session(sid)
        return user

    def close_session(self, sid: str | None) -> None:
        with self._lock:
            self.sessions.pop(sid or "", None)

    def close_sessions_of(self, user: str, *, keep: str | None = None) -> None:
        """End every session of ``user`` (but ``keep``): a new password logs out the rest."""
        with self._lock:
            for sid in [s for s, (u, _) in self.sessions.items() if u == user and s != keep]:
                del self.sessions[sid]
