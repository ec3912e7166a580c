"""Helpers for the Postgres-specific tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from taskmaster_core import NewJob
from taskmaster_postgres import PostgresBroker


def job(queue: str = "q", payload: bytes = b"{}", **fields: Any) -> NewJob:
    return NewJob(queue=queue, payload=payload, serializer="json", **fields)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, step: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(step)


class Recorder:
    """A wake-up callback that remembers what it was called with."""

    def __init__(self) -> None:
        self.calls: list[str | None] = []
        self._cond = threading.Condition()

    def __call__(self, queue: str | None) -> None:
        with self._cond:
            self.calls.append(queue)
            self._cond.notify_all()

    def wait_for(self, value: str | None, timeout: float = 10.0) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: value in self.calls, timeout):
                raise AssertionError(f"no wake-up {value!r} within {timeout}s: {self.calls}")


def backends(conn: psycopg.Connection[Any], broker: PostgresBroker) -> list[tuple[int, str]]:
    """(pid, query) of the server connections opened by ``broker``."""
    rows = conn.execute(
        "SELECT pid, query FROM pg_stat_activity WHERE application_name = %s",
        [broker.application_name],
    ).fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]


def listen(conn: psycopg.Connection[Any], broker: PostgresBroker) -> None:
    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(broker.names.channel)))


def drain(conn: psycopg.Connection[Any], quiet: float = 0.3) -> list[str]:
    """Payloads of the notifications that arrive until ``quiet`` seconds pass without one."""
    payloads: list[str] = []
    while True:
        batch = [n.payload for n in conn.notifies(timeout=quiet)]
        if not batch:
            return payloads
        payloads.extend(batch)
