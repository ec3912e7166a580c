"""One LISTEN connection per broker, shared by all of its subscriptions.

A daemon thread owns a dedicated autocommit connection (not one from the
pool: a pooled connection would be handed to other work between uses and
its LISTEN lost). It LISTENs on the table's channel and hands every
notification's payload (a queue name) to the callbacks subscribed to that
queue. When the connection drops (``pg_terminate_backend``, a server restart,
a network failure) it reconnects with exponential backoff capped at
``max_backoff`` seconds, and after reconnecting calls every callback with
``None``: notifications may have been missed, so consumers claim once to
catch up.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection
from typing import Any

import psycopg
from psycopg import sql

from taskmaster_core import BrokerUnavailableError, WakeCallback

from ._errors import error_type

__all__ = ["Listener", "ListenerSubscription", "NullSubscription"]

logger = logging.getLogger("taskmaster.postgres")

_POLL_INTERVAL = 0.25
"""How long the thread waits for notifications before checking for close()."""


class NullSubscription:
    """What ``subscribe`` returns in polling-only mode: it never calls back."""

    def close(self) -> None:
        pass


class _Run:
    """One listening thread's life: started by the first subscription, told to
    stop when the last one goes (or on close)."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.listening = threading.Event()
        self.thread: threading.Thread | None = None


class ListenerSubscription:
    def __init__(self, listener: Listener, queues: frozenset[str], callback: WakeCallback):
        self.queues = queues
        self.callback = callback
        self._listener = listener

    def close(self) -> None:
        self._listener.unsubscribe(self)


class Listener:
    def __init__(
        self,
        conninfo: str,
        channel: str,
        *,
        connect_kwargs: dict[str, Any],
        ready_timeout: float,
        max_backoff: float = 5.0,
        describe: Callable[[], str] = lambda: "postgres",
    ) -> None:
        self._conninfo = conninfo
        self._listen = sql.SQL("LISTEN {}").format(sql.Identifier(channel))
        self._connect_kwargs = connect_kwargs
        self._ready_timeout = ready_timeout
        self._max_backoff = max_backoff
        self._describe = describe
        self._lock = threading.Lock()
        self._subscriptions: list[ListenerSubscription] = []
        self._closed = False
        self._run: _Run | None = None
        self._retired: list[_Run] = []
        self.connects = 0
        """Successful (re)connections so far (for tests and diagnostics)."""

    def subscribe(self, queues: Collection[str], callback: WakeCallback) -> ListenerSubscription:
        subscription = ListenerSubscription(self, frozenset(queues), callback)
        with self._lock:
            self._subscriptions.append(subscription)
            self._retired = [r for r in self._retired if r.thread and r.thread.is_alive()]
            run = self._run
            if run is None and not self._closed:
                run = self._run = _Run()
                run.thread = threading.Thread(
                    target=self._listen_loop,
                    args=(run,),
                    name="taskmaster-postgres-listener",
                    daemon=True,
                )
                run.thread.start()
        # Wait (bounded) until LISTEN is in place, so a job put after subscribe()
        # returns is notified. If the database is unreachable, consumers poll.
        if run is not None:
            run.listening.wait(self._ready_timeout)
        return subscription

    def unsubscribe(self, subscription: ListenerSubscription) -> None:
        """Forget a subscription; the last one out stops the LISTEN connection,
        so that a process that only puts pays nothing for notifications."""
        with self._lock:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)
            if not self._subscriptions and self._run is not None:
                self._run.stop.set()
                self._retired.append(self._run)
                self._run = None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            runs = [*self._retired, *([self._run] if self._run is not None else [])]
            self._run = None
            self._retired = []
            self._subscriptions.clear()
        for run in runs:
            run.stop.set()
        for run in runs:
            if run.thread is not None:
                run.thread.join()

    @property
    def listening(self) -> bool:
        run = self._run
        return run is not None and run.listening.is_set()

    def _dispatch(self, queue: str | None) -> None:
        with self._lock:
            targets = [s for s in self._subscriptions if queue is None or queue in s.queues]
        for subscription in targets:
            try:
                subscription.callback(queue)
            except Exception:
                logger.exception("wake-up callback %r failed", subscription.callback)

    def _listen_loop(self, run: _Run) -> None:
        backoff = 0.1
        attempts = 0
        stop = run.stop
        while not stop.is_set():
            attempts += 1
            try:
                with psycopg.connect(
                    self._conninfo, autocommit=True, **self._connect_kwargs
                ) as conn:
                    conn.execute(self._listen)
                    self.connects += 1
                    run.listening.set()
                    if attempts > 1:
                        logger.info("listener reconnected to %s", self._describe())
                        self._dispatch(None)  # catch up on what we may have missed
                    backoff = 0.1
                    while not stop.is_set():
                        for notify in conn.notifies(timeout=_POLL_INTERVAL):
                            self._dispatch(notify.payload)
            except psycopg.Error as exc:
                run.listening.clear()
                if stop.is_set():
                    break
                # Whatever went wrong, the listener retries (consumers poll
                # meanwhile); a refusal that waiting will not fix is an error.
                unavailable = issubclass(error_type(exc), BrokerUnavailableError)
                logger.log(
                    logging.WARNING if unavailable else logging.ERROR,
                    "listener connection to %s lost (%s); reconnecting in %.1fs",
                    self._describe(),
                    exc,
                    backoff,
                )
                stop.wait(backoff)
                backoff = min(backoff * 2, self._max_backoff)
            except Exception:  # pragma: no cover - a bug; keep the thread alive
                run.listening.clear()
                logger.exception("listener failed unexpectedly")
                stop.wait(backoff)
                backoff = min(backoff * 2, self._max_backoff)
        run.listening.clear()
