"""Users, roles and API tokens: invitations, logins, role changes, disabling, tokens.

Roles: a **viewer** reads everything and changes nothing; an **editor** changes sources,
connections, properties, projects and settings; an **admin** also manages users. Passwords
are stored with scrypt and a salt; invitation codes and API tokens are random (256 bits)
and stored as SHA-256, which is enough for a random secret. There is always at least one
active admin: the last one cannot be demoted or disabled.

Homes from before users keep working: :func:`migrate_single_login` turns the one ``admin``
login and the admin token kept in settings into the user ``admin`` and its token.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import timedelta

from profilesync.app.home import Store
from profilesync.errors import ConfigurationError, NotFoundError, UiFix
from profilesync.model import now
from profilesync.store.access import ROLES, ApiToken, User

__all__ = ["ROLES", "ApiToken", "User"]  # and the use cases below

ADMIN = "admin"
MIN_PASSWORD = 8
INVITE_DAYS = 7
#: the label of the admin token ``profilesync serve`` prints (``--new-token`` replaces it)
SERVER_TOKEN_LABEL = "serve"
#: seconds between two writes of a token's "last used" time
TOUCH_SECONDS = 60
LEGACY_TOKEN_KEY = "server.admin_token_sha256"
LEGACY_PASSWORD_KEY = "server.admin_password_scrypt"
_NAME = re.compile(r"[a-z0-9][a-z0-9._@-]{0,62}")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
# compared against when the user does not exist, so a wrong name costs as long as a wrong password
_DUMMY = "scrypt$16384$8$1$00$00"


# -- hashing ------------------------------------------------------------------------------


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


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise ConfigurationError(
            f"a password needs at least {MIN_PASSWORD} characters: choose a longer one"
        )
    return password


# -- users ----------------------------------------------------------------------------------


def normal_name(name: str) -> str:
    """A user name as stored: trimmed and lower case, letters, digits and ``._@-``."""
    cleaned = name.strip().lower()
    if not _NAME.fullmatch(cleaned):
        shown = name if len(name) <= 30 else name[:27] + "..."
        raise ConfigurationError(
            f"{shown!r} cannot be a user name: use up to 63 letters, digits, “.”, “_”, “@” "
            "or “-”, starting with a letter or digit, e.g. ana or ana@example.com"
        )
    return cleaned


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ConfigurationError(f"role {role!r}: choose one of {', '.join(reversed(ROLES))}")
    return role


def get_user(store: Store, name: str) -> User:
    user = store.find_user(name.strip().lower())
    if user is None:
        raise NotFoundError(
            f"no user named {name!r}: see `profilesync user list` or the Members page",
            ui_fix=UiFix("See the Members page", "/members"),
        )
    return user


def list_users(store: Store) -> list[User]:
    migrate_single_login(store)
    return store.list_users()


def add_user(store: Store, name: str, role: str, password: str, *, by: str | None = None) -> User:
    """A user who can log in at once with ``password``."""
    name, role = _new_name(store, name), check_role(role)
    return store.add_user(
        name, role, password_hash=hash_password(check_password(password)), invited_by=by
    )


def invite(store: Store, name: str, role: str, *, by: str) -> tuple[User, str]:
    """A user who sets a password through a one-time code (valid :data:`INVITE_DAYS`);
    inviting again someone who has not accepted yet gives a new code (the old one dies)."""
    code = secrets.token_urlsafe(24)
    expires = now() + timedelta(days=INVITE_DAYS)
    existing = store.find_user(name.strip().lower())
    if existing is not None and existing.status == "invited":
        store.set_user_invite(existing.name, hash_token(code), expires)
        store.set_user_role(existing.name, check_role(role))
        return get_user(store, existing.name), code
    name, role = _new_name(store, name), check_role(role)
    user = store.add_user(
        name, role, invite_hash=hash_token(code), invite_expires_at=expires, invited_by=by
    )
    return user, code


def invited_user(store: Store, code: str) -> User:
    """The user a live invitation code belongs to."""
    user = store.find_invited_user(hash_token(code))
    expired = user is not None and (user.invite_expires_at or now()) < now()
    if user is None or expired or user.disabled_at is not None:
        raise NotFoundError(
            "this invitation link is unknown, used or expired: ask an admin for a new one"
        )
    return user


def accept_invite(store: Store, code: str, password: str) -> User:
    user = invited_user(store, code)
    store.set_user_password(user.name, hash_password(check_password(password)))
    return get_user(store, user.name)


def _new_name(store: Store, name: str) -> str:
    cleaned = normal_name(name)
    if store.find_user(cleaned) is not None:
        raise ConfigurationError(f"user {cleaned!r} exists already: pick another name")
    return cleaned


def login(store: Store, name: str, password: str) -> User | None:
    """The active user ``name`` if ``password`` is theirs, else None (same cost either way)."""
    return check_login(login_hash(store, name), password)


def login_hash(store: Store, name: str) -> tuple[User | None, str]:
    """What checking a login reads from the store: the user ``name`` (None if unknown) and
    the hash to compare with. :func:`check_login` does the slow part without the store."""
    user = store.find_user(name.strip().lower())
    stored = store.user_password_hash(user.name) if user else None
    return user, stored or _DUMMY


def check_login(found: tuple[User | None, str], password: str) -> User | None:
    """The user of :func:`login_hash` if ``password`` is theirs and they are active."""
    user, stored = found
    ok = verify_password(password, stored)
    return user if ok and user is not None and user.status == "active" else None


def active_user(store: Store, name: str) -> User | None:
    """``name`` if it may still act (exists, not disabled, has a password)."""
    user = store.find_user(name)
    return user if user is not None and user.status == "active" else None


def set_role(store: Store, name: str, role: str) -> User:
    user, role = get_user(store, name), check_role(role)
    if user.role == ADMIN and role != ADMIN:
        _keep_an_admin(store, user, "change the role of")
    store.set_user_role(user.name, role)
    return get_user(store, user.name)


def set_disabled(store: Store, name: str, disabled: bool) -> User:
    """Disabled: the user's sessions and tokens stop working at once (re-enabling revives
    the tokens that were not revoked)."""
    user = get_user(store, name)
    if disabled and user.role == ADMIN:
        _keep_an_admin(store, user, "disable")
    store.set_user_disabled(user.name, disabled)
    return get_user(store, user.name)


def _keep_an_admin(store: Store, user: User, verb: str) -> None:
    others = [
        u
        for u in store.list_users()
        if u.role == ADMIN and u.status == "active" and u.name != user.name
    ]
    if not others:
        raise ConfigurationError(
            f"cannot {verb} {user.name!r}, the last active admin: make another user admin first"
        )


def change_password(store: Store, name: str, current: str, new: str) -> None:
    stored = store.user_password_hash(name)
    if not stored or not verify_password(current, stored):
        raise ConfigurationError("the current password is wrong: type it again")
    store.set_user_password(name, hash_password(check_password(new)))


def set_password(store: Store, name: str, password: str, *, role: str = ADMIN) -> User:
    """The host's operator sets a password (``serve --admin-password-file``): the user is
    made with ``role`` when missing."""
    check_password(password)
    if store.find_user(name) is None:
        return store.add_user(name, role, password_hash=hash_password(password))
    store.set_user_password(name, hash_password(password))
    return get_user(store, name)


def has_login(store: Store) -> bool:
    """Whether an admin can log in (else ``serve`` makes the ``admin`` user's password)."""
    migrate_single_login(store)
    return any(u.status == "active" and u.role == ADMIN for u in store.list_users())


# -- API tokens ------------------------------------------------------------------------------


def create_token(store: Store, user: str, label: str) -> tuple[ApiToken, str]:
    """A new token of ``user``, acting with its role; the token is returned only here."""
    label = label.strip() or "token"
    if len(label) > 100:
        raise ConfigurationError("a token label has at most 100 characters: shorten it")
    token = "ps_" + secrets.token_urlsafe(32)
    return store.add_api_token(
        get_user(store, user).name, label, hash_token(token), _hint(token)
    ), token


def _hint(token: str) -> str:
    return f"ps_…{token[-4:]}"


def list_tokens(store: Store, user: str | None = None) -> list[ApiToken]:
    return store.list_api_tokens(user)


def revoke_token(store: Store, token_id: int, *, user: str | None = None) -> ApiToken:
    """Revoke a token; ``user`` (not an admin) may revoke only their own."""
    token = store.get_api_token(token_id)
    if token is None or token.revoked_at is not None or (user and token.user_name != user):
        raise NotFoundError(
            f"no live API token {token_id}: see `profilesync token list`",
            ui_fix=UiFix("See your tokens on the Account page", "/account"),
        )
    store.revoke_api_token(token_id)
    return token


def token_user(store: Store, token: str) -> User | None:
    """The active user a live token belongs to; its last use is noted (once a minute)."""
    found = store.find_api_token(hash_token(token))
    if found is None:
        return None
    user = active_user(store, found.user_name)
    moment = now()
    last = found.last_used_at
    if user is not None and (last is None or (moment - last).total_seconds() > TOUCH_SECONDS):
        store.touch_api_token(found.id, moment)
    return user


def issue_server_token(store: Store) -> str:
    """The admin token ``serve`` prints: a new one replaces the one it printed before."""
    migrate_single_login(store)
    if store.find_user(ADMIN) is None:
        store.add_user(ADMIN, ADMIN)
    for old in store.list_api_tokens(ADMIN):
        if old.label == SERVER_TOKEN_LABEL:
            store.revoke_api_token(old.id)
    return create_token(store, ADMIN, SERVER_TOKEN_LABEL)[1]


def has_server_token(store: Store) -> bool:
    migrate_single_login(store)
    return any(t.label == SERVER_TOKEN_LABEL for t in store.list_api_tokens(ADMIN))


def migrate_single_login(store: Store) -> None:
    """A home from before users: its ``admin`` login and admin token become the user
    ``admin`` (role admin) and that user's token; the old settings are removed."""
    password = store.get_setting(LEGACY_PASSWORD_KEY)
    token = store.get_setting(LEGACY_TOKEN_KEY)
    if password is None and token is None:
        return
    if store.find_user(ADMIN) is None:
        store.add_user(ADMIN, ADMIN, password_hash=password)
    elif password is not None and store.user_password_hash(ADMIN) is None:
        store.set_user_password(ADMIN, password)
    if token is not None and store.find_api_token(token) is None:
        store.add_api_token(ADMIN, SERVER_TOKEN_LABEL, token, "ps_…")
    store.set_setting(LEGACY_PASSWORD_KEY, None)
    store.set_setting(LEGACY_TOKEN_KEY, None)
