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

from taskmaster_core import WakeCallback

__all__ = ["Listener", "ListenerSubscription", "NullSubscription"]

logger = logging.getLogger("taskmaster.postgres")

_POLL_INTERVAL = 0.25
"""How long the thread waits for notifications before checking for close()."""


class NullSubscription:
    """What ``subscribe`` returns in polling-only mode: it never calls back."""

    def close(self) -> None:
        pass


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
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._thread: threading.Thread | None = None
        self.connects = 0
        """Successful (re)connections so far (for tests and diagnostics)."""

    def subscribe(self, queues: Collection[str], callback: WakeCallback) -> ListenerSubscription:
        subscription = ListenerSubscription(self, frozenset(queues), callback)
        with self._lock:
            self._subscriptions.append(subscription)
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="taskmaster-postgres-listener", daemon=True
                )
                self._thread.start()
        # Wait (bounded) until LISTEN is in place, so a job put after subscribe()
        # returns is notified. If the database is unreachable, consumers poll.
        self._listening.wait(self._ready_timeout)
        return subscription

    def unsubscribe(self, subscription: ListenerSubscription) -> None:
        with self._lock:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            thread, self._thread = self._thread, None
            self._subscriptions.clear()
        if thread is not None:
            thread.join()

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    def _dispatch(self, queue: str | None) -> None:
        with self._lock:
            targets = [s for s in self._subscriptions if queue is None or queue in s.queues]
        for subscription in targets:
            try:
                subscription.callback(queue)
            except Exception:
                logger.exception("wake-up callback %r failed", subscription.callback)

    def _run(self) -> None:
        backoff = 0.1
        attempts = 0
        while not self._stop.is_set():
            attempts += 1
            try:
                with psycopg.connect(
                    self._conninfo, autocommit=True, **self._connect_kwargs
                ) as conn:
                    conn.execute(self._listen)
                    self.connects += 1
                    self._listening.set()
                    if attempts > 1:
                        logger.info("listener reconnected to %s", self._describe())
                        self._dispatch(None)  # catch up on what we may have missed
                    backoff = 0.1
                    while not self._stop.is_set():
                        for notify in conn.notifies(timeout=_POLL_INTERVAL):
                            self._dispatch(notify.payload)
            except psycopg.Error as exc:
                self._listening.clear()
                if self._stop.is_set():
                    break
                logger.warning(
                    "listener connection to %s lost (%s); reconnecting in %.1fs",
                    self._describe(),
                    exc,
                    backoff,
                )
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._max_backoff)
            except Exception:  # pragma: no cover - a bug; keep the thread alive
                self._listening.clear()
                logger.exception("listener failed unexpectedly")
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._max_backoff)
        self._listening.clear()
