"""Each active source syncs at its frequency inside ``serve``.

An APScheduler ``BackgroundScheduler`` with one worker thread runs a ``tick`` every few
seconds and the "Sync now" requests, so syncs never run two at once in this process; the
engine's ``source_lock`` keeps other processes out too. ``tick`` asks, for every source,
when it is due: its last start plus its frequency (from the run history at first, so runs
missed while the server was down run once at start), or a retry time after a failure a
retry may fix (backoff, a bounded number of times; every attempt is in the run history).

Syncs write through their own store connection (``sync_store``, the same database in
this process) under ``sync_lock``, so pages, the API and event ingestion keep answering
from the app's connection while a sync runs and see its result when it commits. Writes
that touch a source's row or profile table take ``sync_lock`` first (see
``deps.write_session``), so they never conflict with a sync's transaction.

A failure that needs a person (the table was replaced, history expired, quota reached,
change tracking off) stops the source's scheduled runs until a successful sync (usually a
resync) or a manual resume; the reason is kept in the store's settings so it survives a
restart and the overview can show it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from profilesync.app import Store
from profilesync.app.alerts import Pending, decide_run, deliver
from profilesync.app.runs import sync_source
from profilesync.errors import NEEDS_PERSON, ConcurrentSyncError, NotFoundError, ProfilesyncError
from profilesync.model import MAX_FREQUENCY_SECONDS, Source, SyncResult

log = logging.getLogger("profilesync.scheduler")

BLOCK_KEY = "scheduler.blocked."

Clock = Callable[[], datetime]
SyncFn = Callable[..., SyncResult]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` retries after a retriable failure, waiting ``first * factor**n`` seconds."""

    attempts: int = 3
    first_seconds: float = 30.0
    factor: float = 4.0

    def delay(self, retry: int) -> timedelta:
        return timedelta(seconds=self.first_seconds * self.factor ** (retry - 1))


@dataclass
class SourceState:
    """What the scheduler remembers of one source between ticks."""

    last_started: datetime | None = None
    retries: int = 0
    retry_at: datetime | None = None
    last_error: str | None = None


@dataclass
class Scheduler:
    """Decides when each source syncs and runs the syncs, one at a time.

    ``store``/``lock`` serve the scheduler's own short reads and writes; syncs use
    ``sync_store`` (default: ``store``) while holding ``sync_lock``.
    """

    store: Store
    lock: threading.RLock
    clock: Clock = utcnow
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    sync: SyncFn = sync_source
    sync_store: Store | None = None
    sync_lock: threading.RLock = field(default_factory=threading.RLock)
    states: dict[str, SourceState] = field(default_factory=dict)
    busy: set[str] = field(default_factory=set)  # queued or running
    running: str | None = None
    _guard: threading.Lock = field(default_factory=threading.Lock)
    _aps: Any = None

    # -- lifecycle -------------------------------------------------------------------
    def start(self, tick_seconds: float | None = 15.0) -> None:
        """Start the worker thread; ``tick_seconds=None`` runs only "Sync now" requests."""
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        self._aps = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=1)}, timezone=UTC
        )
        if tick_seconds:
            self._aps.add_job(
                self.tick,
                "interval",
                seconds=tick_seconds,
                id="tick",
                next_run_time=utcnow(),  # catch up on missed runs right away
                max_instances=1,
                coalesce=True,
            )
        self._aps.start()

    def shutdown(self) -> None:
        """Stop scheduling; a sync in progress finishes first."""
        if self._aps is not None and self._aps.running:
            self._aps.shutdown(wait=True)

    # -- deciding --------------------------------------------------------------------
    def next_run(self, source: Source, now: datetime | None = None) -> datetime | None:
        """When ``source`` syncs next (None: paused or stopped until a person acts).

        A source that never ran is due ``now``: the caller's clock reading, so that a
        tick comparing against the same reading finds it due.
        """
        if source.paused or self.blocked(source.name):
            return None
        state = self._state(source.name)
        if state.retry_at is not None:
            return state.retry_at
        if state.last_started is None:
            return now or self.clock()
        # a store written before frequencies were bounded may hold one past any date
        every = min(source.frequency_seconds, MAX_FREQUENCY_SECONDS)
        return state.last_started + timedelta(seconds=every)

    def due(self) -> list[str]:
        now = self.clock()
        with self.lock:
            sources = self.store.list_sources()
        return [s.name for s in sources if (at := self.next_run(s, now)) is not None and at <= now]

    def tick(self) -> list[str]:
        """Run every due source once, one after another; the names that ran."""
        ran: list[str] = []
        try:
            due = self.due()
        except ProfilesyncError as exc:
            log.warning("scheduler: cannot list sources: %s", exc)
            return ran
        for name in due:
            if self._claim(name):
                try:
                    self.run(name, claimed=True)
                except ProfilesyncError:
                    pass  # recorded in the run history and the source's state
                except Exception:  # one broken source never stops the others
                    log.exception("scheduler: sync of %s failed", name)
                ran.append(name)
        return ran

    def _state(self, name: str) -> SourceState:
        state = self.states.get(name)
        if state is None:
            state = self.states[name] = SourceState(last_started=self._last_started(name))
        return state

    def _last_started(self, name: str) -> datetime | None:
        with self.lock:
            runs = self.store.runs(name, limit=1)
        if not runs or not runs[0]["started_at"]:
            return None
        return datetime.fromisoformat(runs[0]["started_at"])

    # -- running ---------------------------------------------------------------------
    def _claim(self, name: str) -> bool:
        with self._guard:
            if name in self.busy:
                return False
            self.busy.add(name)
            return True

    def sync_now(self, name: str, *, resync: bool = False) -> None:
        """Queue one sync of ``name`` on the worker; refused while one is queued or running."""
        if not self._claim(name):  # answered at once, without waiting for the store
            raise ConcurrentSyncError(
                f"a sync of source {name!r} is already queued or running: wait for it to finish"
            )
        try:
            if self._aps is None:
                raise ProfilesyncError("the scheduler is not running: start `profilesync serve`")
            with self.lock:
                self.store.get_source(name)
        except BaseException:
            with self._guard:
                self.busy.discard(name)
            raise
        self._aps.add_job(
            self._run_quietly, args=[name, resync], misfire_grace_time=None, coalesce=False
        )

    def _run_quietly(self, name: str, resync: bool) -> None:
        # a failure is recorded in the run history and in the source's state
        with contextlib.suppress(ProfilesyncError):
            self.run(name, resync=resync, claimed=True)

    def run(self, name: str, *, resync: bool = False, claimed: bool = False) -> SyncResult | None:
        """One sync now, in this thread; None when another sync of ``name`` holds it.

        What the run changed for the alert channels is decided under the locks; the
        receivers are called after they are released, so writes and syncs never wait on one.
        """
        if not claimed and not self._claim(name):
            raise ConcurrentSyncError(
                f"a sync of source {name!r} is already queued or running: wait for it to finish"
            )
        state = self._state(name)
        pending: Pending = []
        try:
            with self.sync_lock, contextlib.ExitStack() as held:
                if self.sync_store is None:  # one connection: syncs hold the store's lock
                    held.enter_context(self.lock)
                self.running = name
                started = self.clock()
                try:
                    result = self.sync(self.sync_store or self.store, name, resync=resync)
                except ConcurrentSyncError:
                    return None  # another process syncs it: not a failure, not a retry
                except NotFoundError as exc:
                    self.states.pop(name, None)  # deleted meanwhile, or its table is gone
                    pending = decide_run(self.store, name, error=exc, lock=self.lock)
                    raise
                except ProfilesyncError as exc:
                    pending = self._failed(name, state, started, exc)
                    raise
                pending = self._succeeded(name, state, started)
                return result
        finally:
            self.running = None
            with self._guard:
                self.busy.discard(name)
            deliver(self.store, pending, lock=self.lock)  # no sync or write waits on it

    def _succeeded(self, name: str, state: SourceState, started: datetime) -> Pending:
        state.last_started, state.retries, state.retry_at, state.last_error = (
            started,
            0,
            None,
            None,
        )
        self.unblock(name)
        return decide_run(self.store, name, lock=self.lock)  # a recovery, a quota threshold

    def _failed(
        self, name: str, state: SourceState, started: datetime, exc: ProfilesyncError
    ) -> Pending:
        state.last_started, state.last_error = started, str(exc)
        if exc.code in NEEDS_PERSON:
            state.retries, state.retry_at = 0, None
            stop = {"code": exc.code, "message": str(exc), "at": started.isoformat()}
            with self.lock:
                self.store.set_setting(BLOCK_KEY + name, json.dumps(stop))
            log.warning("source %s stopped until someone acts: %s", name, exc)
        elif exc.retriable and state.retries < self.retry.attempts:
            state.retries += 1
            state.retry_at = self.clock() + self.retry.delay(state.retries)
            log.warning(
                "source %s failed (retry %d at %s): %s", name, state.retries, state.retry_at, exc
            )
        else:
            state.retries, state.retry_at = 0, None  # wait for the next regular run
            log.warning("source %s failed: %s", name, exc)
        # once per change: a failure still to be retried tells no one yet
        retrying, stopped = state.retry_at is not None, exc.code in NEEDS_PERSON
        return decide_run(
            self.store, name, error=exc, retrying=retrying, stopped=stopped, lock=self.lock
        )

    # -- stopped sources -------------------------------------------------------------
    def blocked(self, name: str) -> dict[str, Any] | None:
        """``{"code", "message", "at"}`` when ``name`` is stopped until a person acts."""
        with self.lock:
            raw = self.store.get_setting(BLOCK_KEY + name)
        return json.loads(raw) if raw else None

    def unblock(self, name: str) -> None:
        with self.lock:
            if self.store.get_setting(BLOCK_KEY + name) is not None:
                self.store.set_setting(BLOCK_KEY + name, None)

    def resume(self, name: str) -> None:
        """Unpause and lift a stop: the next tick runs it if it is due."""
        with self.sync_lock, self.lock:  # the source's row: never while it syncs
            self.store.update_source(name, paused=False)
        self.unblock(name)
        state = self._state(name)
        state.retries, state.retry_at = 0, None

    def forget(self, name: str) -> None:
        """A deleted source: drop its state and its stop."""
        self.states.pop(name, None)
        self.unblock(name)

    def status(self, source: Source) -> dict[str, Any]:
        """For the overview: state, next run and why it is stopped or retrying."""
        blocked = self.blocked(source.name)
        state = self._state(source.name)
        if source.name == self.running:
            kind = "running"
        elif source.name in self.busy:
            kind = "queued"
        elif blocked:
            kind = "stopped"
        elif source.paused:
            kind = "paused"
        elif state.retry_at is not None:
            kind = "retrying"
        else:
            kind = "active"
        at = self.next_run(source)
        return {
            "state": kind,
            "next_run": at.isoformat() if at else None,
            "stopped": blocked,
            "retry": {
                "attempt": state.retries,
                "of": self.retry.attempts,
                "error": state.last_error,
            }
            if state.retry_at
            else None,
        }
