"""The store as an analysis sees it: heavy reads outside the store lock.

A funnel, a retention table or a cohort's members are computed by one call of
:mod:`profilesync.app.analyses` that both looks things up (the catalog of profile
properties, saved cohorts, projects) and runs large reads. :func:`analysing` hands that
call a stand-in for the store: its ``read`` runs on the store's reader (a snapshot of its
own, as segmentation uses), so a long query does not hold up ingestion or the other
pages; everything else it asks of the store runs holding the store lock, one call at a
time, as every other route does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, cast

from fastapi import Request

from profilesync.app import Store
from profilesync.app import events as app_events
from profilesync.server.deps import get_lock, store_session

_PLAIN = (str, bytes, int, float, bool, type(None), Path)


class _Locked:
    """``target`` whose every call (and every part's call) holds ``lock``."""

    def __init__(self, target: Any, lock: threading.RLock) -> None:
        self._target, self._lock = target, lock

    def __getattr__(self, name: str) -> Any:
        with self._lock:
            value = getattr(self._target, name)
        return _guarded(value, self._lock)


def _guarded(value: Any, lock: threading.RLock) -> Any:
    if isinstance(value, (*_PLAIN, type)):
        return value
    if callable(value):
        call: Callable[..., Any] = value

        def locked(*args: Any, **kwargs: Any) -> Any:
            with lock:
                return call(*args, **kwargs)

        return locked
    return _Locked(value, lock)


class _Snapshot(_Locked):
    """The store, with ``read`` on a reader that needs no lock."""

    def __init__(self, store: Store, lock: threading.RLock, reader: app_events.Reader) -> None:
        super().__init__(store, lock)
        self._reader = reader

    def read(self, query: Any, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._reader.read(query, params)


@contextmanager
def analysing(request: Request) -> Iterator[Store]:
    """A stand-in for the app's store for one analysis (see the module's text)."""
    with ExitStack() as stack:
        with store_session(request) as store:
            reader = stack.enter_context(app_events.reader(store))
        yield cast(Store, _Snapshot(store, get_lock(request), reader))
