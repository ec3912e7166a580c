"""The built-in middleware: LoggingMiddleware and ErrorReporter.

Together they behave like the original Taskmaster's with-log / with-error.
"""

from __future__ import annotations

import logging

from taskmaster_core import (
    ACK,
    Consumer,
    ErrorReporter,
    Job,
    LoggingMiddleware,
    Outcome,
    Publisher,
)
from taskmaster_memory import MemoryBroker


def handle(job: Job) -> Outcome:
    if job.payload["n"] == 2:
        raise ValueError("two is not allowed")
    return ACK


def report(job: Job, exc: BaseException) -> None:
    # Send it to your error tracker here.
    print(f"reported: job {job.id} on {job.queue!r} raised {exc!r}")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    with MemoryBroker() as broker:
        Publisher(broker).put_many("numbers", [{"n": 1}, {"n": 2}])
        middleware = [
            LoggingMiddleware(),  # outermost: sees the Reject that ErrorReporter returns
            ErrorReporter(report, reject=True),  # an exception fails the job at once
        ]
        with Consumer(broker, "numbers", handle, middleware=middleware) as consumer:
            assert consumer.wait_idle()
        (stats,) = broker.stats(["numbers"])
        print(f"failed: {stats.failed}")


if __name__ == "__main__":
    main()
