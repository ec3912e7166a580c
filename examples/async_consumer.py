"""Async handlers on your own event loop (docs/async.md).

Run it: python examples/async_consumer.py
"""

import asyncio
import time

from taskmaster_core import ACK, AsyncPublisher, Consumer, Job, Outcome, Retry
from taskmaster_memory import MemoryBroker


async def fetch_page(job: Job) -> Outcome:
    if job.payload["url"].endswith("/slow") and job.attempt == 1:
        await asyncio.sleep(60)  # job_timeout cancels this: the handler sees CancelledError
    if job.payload["url"].endswith("/busy"):
        return Retry(delay=0, reason="server busy")  # runs again (an attempt is used)
    await asyncio.sleep(0.5)  # stands for the HTTP request: the loop runs other jobs meanwhile
    fetched: list[str] = job.context["fetched"]
    fetched.append(job.payload["url"])
    if len(fetched) == 1000:
        print(f"1000 pages fetched after {time.perf_counter() - job.context['started']:.1f}s")
    return ACK


async def main(broker: MemoryBroker) -> None:
    fetched: list[str] = []
    publisher = AsyncPublisher(broker)
    urls = [f"https://example.com/{n}" for n in range(1000)]
    await publisher.put_many("pages", [{"url": url} for url in urls])
    await publisher.put("pages", {"url": "https://example.com/slow"})
    await publisher.put("pages", {"url": "https://example.com/busy"}, max_attempts=2)
    context = {"fetched": fetched, "started": time.perf_counter()}
    consumer = Consumer(
        broker, "pages", fetch_page, concurrency=1000, job_timeout=2, context=context
    )
    async with consumer:  # handlers run as tasks on this loop; stop waits for them
        assert await consumer.wait_idle_async(timeout=30, scheduled=True)  # retries too
    print(f"fetched {len(fetched)} pages at concurrency 1000 (each waited 0.5 s)")
    failed = broker.stats(["pages"])[0].failed
    slow = fetched.count("https://example.com/slow")
    print(f"the slow page timed out once, then was fetched: {slow}")
    print(f"failed: {failed} (the busy page, after 2 attempts)")


with MemoryBroker() as broker:
    asyncio.run(main(broker))
