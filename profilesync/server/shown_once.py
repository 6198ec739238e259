"""A secret shown once, on the page its maker lands on after a redirect.

The secret (an API key, a token, an invitation link) never goes into the URL or a log:
the redirect carries a random ticket, and the next page view by the same user swaps the
ticket for the secret, which is forgotten as it is read (a reload does not show it again).
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Generic, TypeVar

T = TypeVar("T")


class ShownOnce(Generic[T]):
    """Secrets held for ``seconds`` for their maker's next page view."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._held: dict[str, tuple[str, T, float]] = {}
        self._lock = threading.Lock()  # page handlers run on several threadpool threads

    def hold(self, user: str, value: T) -> str:
        """Keep ``value`` for ``user``'s next page view; return the ticket that fetches it."""
        now, ticket = time.monotonic(), secrets.token_urlsafe(16)
        with self._lock:
            for stale in [t for t, held in self._held.items() if held[2] < now]:
                del self._held[stale]
            self._held[ticket] = (user, value, now + self.seconds)
        return ticket

    def take(self, user: str, ticket: str) -> T | None:
        """The held value, removed as it is read; None when gone, expired or someone else's."""
        with self._lock:
            held = self._held.pop(ticket, None) if ticket else None
        if held is None or held[0] != user or held[2] < time.monotonic():
            return None
        return held[1]
