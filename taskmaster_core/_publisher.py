"""The publisher: puts jobs on queues."""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pluggy

from ._broker import Broker
from ._errors import ConfigurationError, PayloadTooLargeError, PayloadValidationError
from ._middleware import Message, compose_publish, is_middleware_like, publishing
from ._names import check_dedup_key, check_queue_name
from ._plugins import SerializerRegistry, resolve_plugin_manager
from ._plugins import plugin_middleware as _plugin_middleware
from ._serializers import check_declared, encode_declared
from ._types import NewJob

__all__ = ["DEFAULT_MAX_PAYLOAD_SIZE", "Publisher", "PublisherBase", "QueueOptions", "placed"]

DEFAULT_MAX_PAYLOAD_SIZE = 10 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class QueueOptions:
    """Per-queue publishing defaults; ``None`` falls back to the publisher's."""

    serializer: str | None = None
    payload_type: Any = None
    """Payloads put on this queue must match this type (msgspec Struct,
    dataclass, TypedDict, or any type msgspec understands)."""
    max_attempts: int | None = None
    priority: int | None = None


class PublisherBase:
    """What :class:`Publisher` and ``AsyncPublisher`` share: options, message
    building, encoding, payload checks and the publish middleware chain.
    Only the broker call differs (direct, or awaited)."""

    def __init__(
        self,
        broker: Broker,
        *,
        serializer: str = "json",
        max_attempts: int = 3,
        queues: Mapping[str, QueueOptions] | None = None,
        middleware: Sequence[object] = (),
        plugins: bool | pluggy.PluginManager = True,
        max_payload_size: int | None = DEFAULT_MAX_PAYLOAD_SIZE,
    ) -> None:
        pm = resolve_plugin_manager(plugins)
        self._broker = broker
        self._serializers = SerializerRegistry(pm)
        self._serializer = self._serializers.get(serializer)
        self._max_attempts = _check_attempts(max_attempts)
        self._queues = dict(queues or {})
        for name, options in self._queues.items():
            if options.serializer is not None:
                self._serializers.get(options.serializer)
            if options.max_attempts is not None:
                _check_attempts(options.max_attempts)
            check_queue_name(name)
        self._max_payload_size = max_payload_size
        layers = [*_plugin_middleware(pm), *middleware]
        for layer in layers:
            if not is_middleware_like(layer):
                raise ConfigurationError(
                    f"{layer!r} is not middleware (it has no process or publish method)"
                )
        self._publish_layers = publishing(layers)
        for layer in self._publish_layers:
            if inspect.iscoroutinefunction(layer.publish):  # type: ignore[attr-defined]
                raise ConfigurationError(
                    f"{layer!r} has an async publish method; publish middleware is called "
                    "synchronously (by Publisher and AsyncPublisher alike) and must be a "
                    "plain, non-blocking method"
                )

    @property
    def broker(self) -> Broker:
        return self._broker

    # -- internals ---------------------------------------------------------

    def _message(
        self,
        queue: str,
        payload: Any,
        *,
        priority: int | None,
        delay: float | timedelta,
        run_at: datetime | None,
        dedup_key: str | None,
        headers: Mapping[str, str] | None,
        max_attempts: int | None,
        serializer: str | None,
    ) -> Message:
        """The message of a ``put``."""
        return Message(
            queue=queue,
            payload=payload,
            priority=self._default_priority(queue) if priority is None else priority,
            delay=_seconds(delay),
            run_at=run_at,
            dedup_key=dedup_key,
            headers=dict(headers) if headers else {},
            max_attempts=max_attempts,
            serializer=serializer,
        )

    def _messages(
        self,
        queue: str,
        payloads: Iterable[Any],
        *,
        priority: int | None,
        delay: float | timedelta,
        run_at: datetime | None,
        headers: Mapping[str, str] | None,
        max_attempts: int | None,
        serializer: str | None,
    ) -> list[Message]:
        """The messages of a ``put_many``."""
        prio = self._default_priority(queue) if priority is None else priority
        seconds = _seconds(delay)
        shared = dict(headers) if headers else None
        return [
            Message(
                queue=queue,
                payload=payload,
                priority=prio,
                delay=seconds,
                run_at=run_at,
                headers=dict(shared) if shared else {},
                max_attempts=max_attempts,
                serializer=serializer,
            )
            for payload in payloads
        ]

    def _jobs(self, messages: Sequence[Message]) -> tuple[list[NewJob], list[int | None] | None]:
        """The encoded jobs to store and, when publish middleware ran, per
        message the index of its job (``None`` if a middleware dropped it);
        ``None`` for no middleware: one job per message, in order."""
        if not self._publish_layers:
            return [self._encode(m) for m in messages], None
        return self._through_middleware(messages)

    def _publish(self, messages: Sequence[Message], connection: Any) -> list[int | None]:
        """Encode ``messages`` (through the publish middleware) and store them
        in one broker call."""
        if not messages:
            return []
        jobs, slots = self._jobs(messages)
        return placed(self._broker.put(jobs, connection=connection) if jobs else [], slots)

    def _default_priority(self, queue: str) -> int:
        options = self._queues.get(queue)
        if options is not None and options.priority is not None:
            return options.priority
        return 0

    def _through_middleware(
        self, messages: Sequence[Message]
    ) -> tuple[list[NewJob], list[int | None]]:
        """Run each message through the publish chain. Returns the encoded jobs
        and, per message, the index of its job (``None`` if a middleware
        dropped it by not calling ``call_next``)."""
        jobs: list[NewJob] = []
        chain = compose_publish(self._publish_layers, lambda m: jobs.append(self._encode(m)))
        assert chain is not None
        slots: list[int | None] = []
        for message in messages:
            before = len(jobs)
            chain(message)
            if len(jobs) > before + 1:
                raise ConfigurationError("a publish middleware called call_next more than once")
            slots.append(before if len(jobs) > before else None)
        return jobs, slots

    def _encode(self, message: Message) -> NewJob:
        queue = message.queue
        check_queue_name(queue)
        options = self._queues.get(queue)
        name = message.serializer or (options.serializer if options else None)
        serializer = self._serializer if name is None else self._serializers.get(name)
        payload_type = None if options is None else options.payload_type
        if payload_type is None:
            data = serializer.dumps(message.payload)
        else:
            data = encode_declared(serializer, message.payload)
        if self._max_payload_size is not None and len(data) > self._max_payload_size:
            raise PayloadTooLargeError(queue, len(data), self._max_payload_size)
        if payload_type is not None:
            try:
                decoded = serializer.loads(data, payload_type)
            except PayloadValidationError as exc:
                raise PayloadValidationError(f"bad payload for queue {queue!r}: {exc}") from exc
            check_declared(serializer, message.payload, decoded)
        attempts = message.max_attempts
        if attempts is None:
            attempts = options.max_attempts if options and options.max_attempts else None
        return NewJob(
            queue=queue,
            payload=data,
            serializer=serializer.name,
            priority=_check_priority(message.priority),
            delay=_check_delay(message.delay),
            run_at=_epoch(message.run_at),
            max_attempts=self._max_attempts if attempts is None else _check_attempts(attempts),
            dedup_key=check_dedup_key(message.dedup_key),
            headers=_check_headers(message.headers),
        )


def placed(ids: list[int | None], slots: list[int | None] | None) -> list[int | None]:
    """One entry per message: the id its job got, ``None`` where it was dropped."""
    if slots is None:
        return ids
    return [None if slot is None else ids[slot] for slot in slots]


class Publisher(PublisherBase):
    """Puts jobs on queues of a broker.

    Payloads are encoded here (the broker stores bytes), with the queue's
    serializer, checked against the queue's payload type, and passed through
    the publish middleware first. ``AsyncPublisher`` is the same for asyncio.
    """

    def put(
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
        """Put one job; return its id, or ``None`` when it was not stored because
        an unfinished job with the same ``dedup_key`` exists on the queue (or a
        publish middleware dropped it).

        ``connection``: the caller's own backend connection (for a broker with
        ``Capability.TRANSACTIONAL_PUT``, e.g. a database connection), so the
        job commits or rolls back with the caller's transaction."""
        message = self._message(
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
        return self.publish([message], connection=connection)[0]

    def put_many(
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
        """Put many jobs on one queue in one broker call (one round trip on
        Postgres); returns ids in order. For jobs with differing options, build
        :class:`Message` objects and use :meth:`publish`."""
        messages = self._messages(
            queue,
            payloads,
            priority=priority,
            delay=delay,
            run_at=run_at,
            headers=headers,
            max_attempts=max_attempts,
            serializer=serializer,
        )
        return self.publish(messages, connection=connection)

    def publish(self, messages: Sequence[Message], *, connection: Any = None) -> list[int | None]:
        """Put prepared messages (any queues, any options) in one broker call.
        Returns one entry per message: its id, or ``None`` if not stored."""
        return self._publish(messages, connection)


def _seconds(delay: float | timedelta) -> float:
    return delay.total_seconds() if isinstance(delay, timedelta) else delay


def _check_priority(priority: object) -> int:
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise ConfigurationError(f"priority must be an int, got {priority!r}")
    if not -(2**31) <= priority < 2**31:
        raise ConfigurationError(f"priority must fit in 32 bits, got {priority}")
    return priority


def _check_delay(delay: object) -> float:
    if not isinstance(delay, int | float) or isinstance(delay, bool):
        raise ConfigurationError(f"delay must be seconds or a timedelta, got {delay!r}")
    if not math.isfinite(delay) or delay < 0:
        raise ConfigurationError(f"delay must be a finite number >= 0, got {delay!r}")
    return float(delay)


def _check_attempts(attempts: object) -> int:
    if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1:
        raise ConfigurationError(f"max_attempts must be an int >= 1, got {attempts!r}")
    if attempts >= 2**31:
        raise ConfigurationError(f"max_attempts must fit in 32 bits, got {attempts}")
    return attempts


def _check_headers(headers: Mapping[str, str]) -> dict[str, str] | None:
    if not headers:
        return None
    for key, value in headers.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ConfigurationError(f"headers must map strings to strings, got {key!r}: {value!r}")
        if "\x00" in key or "\x00" in value:
            raise ConfigurationError(f"header {key!r} contains a NUL character")
    return dict(headers)


def _epoch(when: datetime | None) -> float | None:
    if when is None:
        return None
    if not isinstance(when, datetime):
        raise ConfigurationError(f"run_at must be a datetime, got {when!r}")
    if when.tzinfo is None:
        raise ConfigurationError(
            f"run_at must be timezone-aware (e.g. datetime.now(UTC)), got naive {when!r}"
        )
    return when.timestamp()
