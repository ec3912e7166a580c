"""Putting jobs from asyncio code with AsyncPublisher (docs/async.md).

Run it: python examples/async_publisher.py
"""

import asyncio

from taskmaster_core import AsyncPublisher, Message
from taskmaster_memory import MemoryBroker


async def main(broker: MemoryBroker) -> None:
    publisher = AsyncPublisher(broker, max_attempts=5)
    first = await publisher.put("emails", {"to": "ada@example.com"}, dedup_key="welcome-ada")
    again = await publisher.put("emails", {"to": "ada@example.com"}, dedup_key="welcome-ada")
    many = await publisher.put_many("reports", [{"day": d} for d in range(1, 8)], delay=60)
    mixed = await publisher.publish([Message("emails", {"to": "bob@example.com"}, priority=5)])
    print(f"put: {first}, the same dedup key again: {again}")
    print(f"put_many: {len(many)} reports, publish: {mixed}")


with MemoryBroker() as broker:
    asyncio.run(main(broker))
    print("stored:", {s.queue: s.ready + s.scheduled for s in broker.stats()})
