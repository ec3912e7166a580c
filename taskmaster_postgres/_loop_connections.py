"""The broker's own async connection for puts from asyncio code.

``AsyncPublisher.put`` without a ``connection`` is awaited on the broker's
own ``psycopg.AsyncConnection``: one per event loop, opened at the first put
on that loop (autocommit, configured as the pool's connections are). A put
while it is busy with another put of the same loop does not wait for it: it
runs on the sync pool in a worker thread instead, so concurrent puts keep
the pool's parallelism. A thread hop costs about as much as a one-row
insert, hence the native path for the common case.

An async connection belongs to its loop: it is closed when the broker
closes, or when its loop is garbage-collected, at the libpq level
(``pgconn.finish()``), which needs no loop.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from typing import Any

import psycopg

from taskmaster_core import BrokerClosedError

from ._connections import Connections
from ._errors import translated

__all__ = ["LoopConnections"]


class _Slot:
    __slots__ = ("busy", "closing", "conn", "finalizer")

    def __init__(self) -> None:
        self.conn: psycopg.AsyncConnection[Any] | None = None
        self.busy = False
        self.closing = False
        """Set by ``close()`` while a put uses the connection: the put closes it."""
        self.finalizer: weakref.finalize[Any, Any] | None = None


class LoopConnections:
    """One async connection per event loop (see the module docstring)."""

    def __init__(self, connections: Connections) -> None:
        self._connections = connections
        self._lock = threading.Lock()
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Slot] = (
            weakref.WeakKeyDictionary()
        )

    async def take(self) -> _Slot | None:
        """This loop's slot, its connection (``slot.conn``) open, for one put;
        ``None`` while another put of this loop has it (the caller then puts
        on the sync pool). Give it back with :meth:`give_back`."""
        loop = asyncio.get_running_loop()
        with self._lock:
            slot = self._slots.get(loop)
            if slot is None:
                slot = self._slots[loop] = _Slot()
            if slot.busy:
                return None
            slot.busy = True
        conn = slot.conn
        if conn is None or conn.closed or conn.broken:
            slot.conn = None
            try:
                with translated("put", self._connections.where):
                    conn = await self._connect()
            except BaseException:
                self._release(slot)
                raise
            if slot.finalizer is not None:
                slot.finalizer.detach()  # the old connection is gone
            slot.conn = conn
            slot.finalizer = weakref.finalize(loop, conn.pgconn.finish)
            if slot.closing:  # the broker closed while we connected
                self._release(slot)
                raise BrokerClosedError("put: the broker is not open")
        return slot

    def give_back(self, slot: _Slot) -> None:
        """The put that took ``slot`` is over (on its loop's thread)."""
        self._release(slot)

    def _release(self, slot: _Slot) -> None:
        with self._lock:
            slot.busy = False
            closing = slot.closing
        if closing and slot.conn is not None:
            slot.conn.pgconn.finish()  # on its own loop's thread, no put on it

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        connections = self._connections
        conn = await psycopg.AsyncConnection.connect(
            connections.dsn,
            autocommit=True,
            prepare_threshold=connections.prepare_threshold,
            **connections.connect_kwargs,
        )
        await conn.execute(*connections.configuration())
        return conn

    def close(self) -> None:
        """Close every loop's connection, from any thread, loops running or
        not. One a put is using is left to that put, which closes it when it
        ends: libpq connections are not for two threads at once."""
        with self._lock:
            slots, self._slots = list(self._slots.values()), weakref.WeakKeyDictionary()
            idle = []
            for slot in slots:
                slot.closing = True
                if not slot.busy:
                    idle.append(slot)
        for slot in idle:
            if slot.conn is not None:
                slot.conn.pgconn.finish()
