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
from typing import Any

from ._broker import AsyncTransactionalPut
from ._errors import ConfigurationError
from ._middleware import Message
from ._publisher import PublisherBase, placed

__all__ = ["AsyncPublisher"]


class AsyncPublisher(PublisherBase):
    """Puts jobs on queues of a broker from asyncio code; the same
    constructor and options as :class:`Publisher`, whose docstrings apply.

    Publish middleware is called synchronously in a worker thread (with the
    caller's context variables, as ``asyncio.to_thread`` copies them); an
    ``async def publish`` is refused. A put cancelled while under way may
    still be stored, as with any network call given up half-way.
    """

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
        return (await self._run(lambda: [build()], connection))[0]

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
        build = partial(
            self._messages,
            queue,
            list(payloads),  # read here, on the caller's side
            priority=priority,
            delay=delay,
            run_at=run_at,
            headers=headers,
            max_attempts=max_attempts,
            serializer=serializer,
        )
        return await self._run(build, connection)

    async def publish(
        self, messages: Sequence[Message], *, connection: Any = None
    ) -> list[int | None]:
        """``Publisher.publish``, awaited: one broker call."""
        return await self._run(lambda: messages, connection)

    async def _run(
        self, build: Callable[[], Sequence[Message]], connection: Any
    ) -> list[int | None]:
        """Build the messages, encode and store them, off the loop: building
        and encoding 10,000 jobs is tens of milliseconds of CPU."""
        if connection is None:
            return await asyncio.to_thread(lambda: self._publish(build(), None))
        transactional = self._transactional()
        jobs, slots = await asyncio.to_thread(lambda: self._jobs(build()))
        if not jobs:
            return placed([], slots)
        return placed(await transactional.put_async(jobs, connection=connection), slots)

    def _transactional(self) -> AsyncTransactionalPut:
        if isinstance(self._broker, AsyncTransactionalPut):
            return self._broker
        raise ConfigurationError(
            f"{self._broker!r} cannot put on a connection of yours from async code "
            "(it does not implement AsyncTransactionalPut)"
        )
