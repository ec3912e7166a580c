"""Async vs sync publisher on Postgres: one-at-a-time puts and put_many.

    python benchmarks/async_put.py postgresql://root@127.0.0.1:5432/test [--runs 5]

Prints jobs/s per run and the median of each, and async as a share of sync
(issue 11's target: at least 90%). Uses a table of its own, dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable

from taskmaster_core import AsyncPublisher, Publisher
from taskmaster_postgres import PostgresBroker

ONES = 2_000
MANY = 10_000


def rate(run: Callable[[], object], jobs: int) -> float:
    started = time.perf_counter()
    run()
    return jobs / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dsn")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with PostgresBroker(args.dsn, table="bench_async_put") as broker:
        broker.migrate()
        sync, async_ = Publisher(broker), AsyncPublisher(broker)

        async def async_ones() -> None:
            for i in range(ONES):
                await async_.put("q", {"i": i})

        cases: dict[str, Callable[[], object]] = {
            "sync put": lambda: [sync.put("q", {"i": i}) for i in range(ONES)],
            "async put": lambda: asyncio.run(async_ones()),
            "sync put_many": lambda: sync.put_many("q", [{"i": i} for i in range(MANY)]),
            "async put_many": lambda: asyncio.run(
                async_.put_many("q", [{"i": i} for i in range(MANY)])
            ),
        }
        results: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.runs):  # interleaved, so drift hits every case alike
            for name, case in cases.items():
                jobs = ONES if name.endswith(" put") else MANY
                results[name].append(rate(case, jobs))
                broker.delete()
        broker.drop_jobs_table()
    medians = {name: statistics.median(rates) for name, rates in results.items()}
    for name, rates in results.items():
        runs = " ".join(f"{r:,.0f}" for r in rates)
        print(f"{name:15} median {medians[name]:>9,.0f} jobs/s   runs: {runs}")
    for kind in ("put", "put_many"):
        share = medians[f"async {kind}"] / medians[f"sync {kind}"]
        print(f"async {kind} / sync {kind}: {share:.0%}")


if __name__ == "__main__":
    main()
