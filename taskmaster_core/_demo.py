"""``taskmaster demo``: the original Taskmaster's example, end to end.

Puts N jobs ``{"some-number": i}``, runs a consumer whose handler acks even
numbers and rejects odd ones, shows progress, and prints a summary.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from ._broker import Broker
from ._consumer import Consumer
from ._job import Job
from ._outcomes import ACK, REJECT, Outcome
from ._publisher import Publisher

__all__ = ["DEMO_QUEUE", "run_demo"]

DEMO_QUEUE = "taskmaster-demo"
_CHUNK = 10_000


def even_or_odd(job: Job) -> Outcome:
    """Ack even numbers, reject odd ones (the original Taskmaster's handler)."""
    return ACK if job.payload["some-number"] % 2 == 0 else REJECT


def run_demo(
    broker: Broker,
    *,
    jobs: int,
    concurrency: int,
    out: TextIO | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the demo on an open broker; return the summary it prints (on
    ``out``, default: ``sys.stdout`` at the time of the call)."""
    out = sys.stdout if out is None else out
    broker.delete(queue=DEMO_QUEUE)  # only the demo's own queue, so reruns start clean
    publisher = Publisher(broker)
    started = time.perf_counter()
    for first in range(0, jobs, _CHUNK):
        publisher.put_many(
            DEMO_QUEUE,
            [{"some-number": i} for i in range(first, min(jobs, first + _CHUNK))],
        )
        _show(out, progress, f"put {min(jobs, first + _CHUNK):,}/{jobs:,} jobs")
    put_seconds = time.perf_counter() - started

    consumer = Consumer(broker, DEMO_QUEUE, even_or_odd, concurrency=concurrency)
    started = time.perf_counter()
    with consumer:
        while consumer.processed < jobs:
            time.sleep(0.05)
            elapsed = time.perf_counter() - started
            done = consumer.processed
            _show(
                out,
                progress,
                f"processed {done:,}/{jobs:,} jobs ({done / max(elapsed, 1e-9):,.0f} jobs/s)",
            )
    seconds = time.perf_counter() - started
    stats = {s.queue: s for s in broker.stats([DEMO_QUEUE])}[DEMO_QUEUE]
    summary = {
        "jobs": jobs,
        "acked": jobs - stats.failed - stats.unfinished,
        "failed": stats.failed,
        "unfinished": stats.unfinished,
        "put_seconds": round(put_seconds, 3),
        "seconds": round(seconds, 3),
        "jobs_per_second": round(jobs / seconds) if seconds > 0 else None,
        "concurrency": concurrency,
    }
    if progress:
        out.write("\r\033[K" if out.isatty() else "")
    out.write(
        f"taskmaster demo on {type(broker).__name__}: {jobs:,} jobs, concurrency {concurrency}\n"
        f"  acked:    {summary['acked']:,}\n"
        f"  failed:   {summary['failed']:,}\n"
        f"  put:      {put_seconds:.2f} s\n"
        f"  elapsed:  {seconds:.2f} s\n"
        f"  rate:     {jobs / max(seconds, 1e-9):,.0f} jobs/s\n"
    )
    out.flush()
    return summary


def _show(out: TextIO, progress: bool, text: str) -> None:
    if not progress:
        return
    if out.isatty():
        out.write(f"\r\033[K{text}")
        out.flush()
