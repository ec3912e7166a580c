"""The async publisher: :class:`Publisher`'s API as coroutines.

Everything is :class:`PublisherBase`'s, shared with the sync publisher:
options, validation, encoding, payload checks, publish middleware and the
broker call. None of it runs on the event loop: without ``connection`` the
whole publish (encoding and the broker's ``put``) runs in a worker thread,
one hop per call; with one, the encoding runs in a worker thread and the
broker's ``put_async`` is awaited on the caller's async connection (brokers
that are :class:`AsyncTransactionalPut`). Encoding 10,000 jobs takes tens of
milliseconds: on the loop, it would stall every other task. See
docs/async.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any, cast

from ._broker import AsyncTransactionalPut
from ._errors import ConfigurationError
from ._middleware import Message
from ._publisher import PublisherBase, placed

__all__ = ["ON_THE_LOOP", "AsyncPublisher"]

ON_THE_LOOP = 64
"""Batches smaller than this are built and encoded on the event loop."""


class AsyncPublisher(PublisherBase):
    """Puts jobs on queues of a broker from asyncio code; the same
    constructor and options as :class:`Publisher`, whose docstrings apply.

    Publish middleware is called synchronously in a worker thread (with the
    caller's context variables, as ``asyncio.to_thread`` copies them); an
    ``async def publish`` is refused. A put cancelled while under way may
    still be stored, as with any network call given up half-way.
    """

    _native: bool | None = None
    """Whether the broker is AsyncTransactionalPut (looked up once: a
    runtime-checkable protocol's isinstance costs ~20 µs)."""

    async def put(
        self,
        queue: str,
        payload: Any,
        *,
        priority: int | None = None,
        delay: float | timedelta = 0.0,
        run_at: datetime | None = None,
        dedup_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        max_attempts: int | None = None,
        serializer: str | None = None,
        connection: Any = None,
    ) -> int | None:
        """``Publisher.put``, awaited. ``connection``: the caller's own async
        connection (an async database connection on Postgres), so the job
        commits or rolls back with the caller's transaction."""
        build = partial(
            self._message,
            queue,
            payload,
            priority=priority,
            delay=delay,
            run_at=run_at,
            dedup_key=dedup_key,
            headers=headers,
            max_attempts=max_attempts,
            serializer=serializer,
        )
        return (await self._run(lambda: [build()], connection, 1))[0]

    async def put_many(
        self,
        queue: str,
        payloads: Iterable[Any],
        *,
        priority: int | None = None,
        delay: float | timedelta = 0.0,
        run_at: datetime | None = None,
        headers: Mapping[str, str] | None = None,
        max_attempts: int | None = None,
        serializer: str | None = None,
        connection: Any = None,
    ) -> list[int | None]:
        """``Publisher.put_many``, awaited: one broker call."""
        listed = list(payloads)  # read here, on the caller's side
        build = partial(
            self._messages,
            queue,
            listed,
            priority=priority,
            delay=delay,
            run_at=run_at,
            headers=headers,
            max_attempts=max_attempts,
            serializer=serializer,
        )
        return await self._run(build, connection, len(listed))

    async def publish(
        self, messages: Sequence[Message], *, connection: Any = None
    ) -> list[int | None]:
        """``Publisher.publish``, awaited: one broker call."""
        return await self._run(lambda: messages, connection, len(messages))

    async def _run(
        self, build: Callable[[], Sequence[Message]], connection: Any, size: int
    ) -> list[int | None]:
        """Build the messages, encode and store them. A batch of ``size`` or
        more messages is built and encoded in a worker thread (10,000 jobs
        are tens of milliseconds of CPU), a smaller one on the loop (a thread
        hop would cost more than the encoding). A broker that is
        :class:`AsyncTransactionalPut` is awaited; any other is called in a
        worker thread."""
        native = self._native
        if native is None:
            native = self._native = isinstance(self._broker, AsyncTransactionalPut)
        if not native:
            if connection is None:
                return await asyncio.to_thread(lambda: self._publish(build(), None))
            raise ConfigurationError(
                f"{self._broker!r} cannot put on a connection of yours from async code "
                "(it does not implement AsyncTransactionalPut)"
            )
        if size < ON_THE_LOOP:
            jobs, slots = self._jobs(build())
        else:
            jobs, slots = await asyncio.to_thread(lambda: self._jobs(build()))
        if not jobs:
            return placed([], slots)
        broker = cast(AsyncTransactionalPut, self._broker)
        return placed(await broker.put_async(jobs, connection=connection), slots)
