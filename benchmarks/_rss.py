"""Worker RSS after N vs M jobs (run in its own process by the harness)."""

from __future__ import annotations

import gc
import json
import time
from pathlib import Path

from taskmaster_core import ACK, Consumer, Job
from taskmaster_postgres import PostgresBroker

from ._common import QUEUE, BenchError


def vm_rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError("no VmRSS in /proc/self/status")


def measure(dsn: str, small: int, large: int, concurrency: int) -> dict[str, float]:
    """The table must already hold ``large`` queued jobs."""
    seen = [0]

    def handler(job: Job) -> object:
        seen[0] += 1
        return ACK

    broker = PostgresBroker(dsn)
    broker.open()
    consumer = Consumer(broker, QUEUE, handler, concurrency=concurrency)
    rss_small = 0
    t0 = time.perf_counter()
    consumer.start()
    try:
        while consumer.processed < large:
            if not rss_small and consumer.processed >= small:
                gc.collect()
                rss_small = vm_rss_kib()
            if time.perf_counter() - t0 > 900:
                raise BenchError(f"rss: only {consumer.processed}/{large} jobs in 900 s")
            time.sleep(0.005)
        elapsed = time.perf_counter() - t0
        gc.collect()
        rss_large = vm_rss_kib()
    finally:
        consumer.stop()
        broker.close()
    return {
        "rss_small_kib": rss_small,
        "rss_large_kib": rss_large,
        "jobs_small": small,
        "jobs_large": large,
        "rate": large / elapsed,
        "handler_calls": seen[0],
    }


def main(dsn: str, small: int, large: int, concurrency: int) -> None:
    print(json.dumps(measure(dsn, small, large, concurrency)))
