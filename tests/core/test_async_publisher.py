"""AsyncPublisher on the memory broker: what only the async publisher has.

Its options, validation, encoding, payload checks and middleware are those of
``Publisher`` (tests/core/test_publisher.py runs every test on both); here:
errors come out of the coroutine, not the call that makes it; a dedup skip
is ``None``; an ``async def publish`` layer and a ``connection`` the broker
cannot take are refused clearly; concurrent puts on one loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from taskmaster_core import (
    AsyncPublisher,
    ConfigurationError,
    Message,
    Middleware,
    Publisher,
    SerializationError,
)
from taskmaster_memory import MemoryBroker


@pytest.fixture
def broker() -> Iterator[MemoryBroker]:
    with MemoryBroker() as broker:
        yield broker


def test_put_put_many_and_publish_are_coroutines(broker: MemoryBroker) -> None:
    publisher = AsyncPublisher(broker)

    async def main() -> tuple[Any, Any, Any]:
        one = await publisher.put("q", {"i": 0})
        many = await publisher.put_many("q", [{"i": 1}, {"i": 2}])
        mixed = await publisher.publish([Message("a", 1), Message("b", 2, priority=4)])
        return one, many, mixed

    one, many, mixed = asyncio.run(main())
    ids = [one, *many, *mixed]
    assert ids == sorted(i for i in ids if i is not None) and len(set(ids)) == 5
    assert [(j.queue, j.priority) for j in broker.jobs()] == [("q", 0)] * 3 + [("a", 0), ("b", 4)]


def test_it_stores_exactly_what_the_sync_publisher_stores(broker: MemoryBroker) -> None:
    options: dict[str, Any] = {"max_attempts": 5, "serializer": "msgpack"}
    Publisher(broker, **options).put("q", {"x": [1, 2]}, priority=3, headers={"h": "v"})
    asyncio.run(
        AsyncPublisher(broker, **options).put("q", {"x": [1, 2]}, priority=3, headers={"h": "v"})
    )
    sync, async_ = broker.jobs()

    def stored(job: Any) -> tuple[Any, ...]:
        return (job.payload, job.serializer, job.priority, job.max_attempts, job.headers)

    assert stored(sync) == stored(async_)


def test_a_refused_payload_is_raised_by_the_coroutine_not_by_the_call(
    broker: MemoryBroker,
) -> None:
    coroutine = AsyncPublisher(broker).put("q", {1, 2, 3j})
    with pytest.raises(SerializationError, match="cannot carry payload"):
        asyncio.run(coroutine)
    bad = AsyncPublisher(broker).put_many("q", [1], priority="high")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="priority must be an int"):
        asyncio.run(bad)
    assert broker.jobs() == []


def test_a_dedup_skip_returns_none(broker: MemoryBroker) -> None:
    publisher = AsyncPublisher(broker)

    async def main() -> list[int | None]:
        first = await publisher.put("q", 1, dedup_key="k")
        second = await publisher.put("q", 2, dedup_key="k")
        batch = await publisher.publish([Message("q", 3, dedup_key="k"), Message("q", 4)])
        return [first, second, *batch]

    first, second, third, fourth = asyncio.run(main())
    assert first is not None and second is None and third is None and fourth is not None


def test_an_async_publish_layer_is_refused_by_both_publishers(broker: MemoryBroker) -> None:
    class AsyncStamp(Middleware):
        async def publish(self, message: Message, call_next: Any) -> None:  # type: ignore[override]
            call_next(message)

    for publisher in (AsyncPublisher, Publisher):
        with pytest.raises(ConfigurationError, match="has an async publish method"):
            publisher(broker, middleware=[AsyncStamp()])


def test_a_connection_is_refused_naming_the_broker(broker: MemoryBroker) -> None:
    with pytest.raises(ConfigurationError, match=r"MemoryBroker.*AsyncTransactionalPut"):
        asyncio.run(AsyncPublisher(broker).put("q", 1, connection=object()))
    assert broker.jobs() == []


def test_many_concurrent_puts_on_one_loop(broker: MemoryBroker) -> None:
    publisher = AsyncPublisher(broker)

    async def main() -> list[int | None]:
        return await asyncio.gather(*(publisher.put("q", i) for i in range(200)))

    ids = asyncio.run(main())
    assert None not in ids and len(set(ids)) == 200
    assert len(broker.jobs(limit=1000)) == 200
