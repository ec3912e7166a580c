"""A custom middleware, the onion order, and a middleware plugin."""

from __future__ import annotations

import sys
from collections.abc import Callable

from taskmaster_core import (
    ACK,
    Consumer,
    Job,
    Message,
    Middleware,
    Outcome,
    Publisher,
    hookimpl,
    new_plugin_manager,
)
from taskmaster_memory import MemoryBroker

ProcessFn = Callable[[Job], Outcome]
PublishFn = Callable[[Message], None]

calls: list[str] = []


class Trace(Middleware):
    """Records when it is entered and left, to show the onion order."""

    def __init__(self, name: str) -> None:
        self.name = name

    def process(self, job: Job, call_next: ProcessFn) -> Outcome:
        calls.append(f"{self.name} in")
        try:
            outcome: Outcome = call_next(job)
            return outcome
        finally:
            calls.append(f"{self.name} out")


class RequestId(Middleware):
    """Stamps every job with a header on put; reads it back on consume."""

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id

    def publish(self, message: Message, call_next: PublishFn) -> None:
        message.headers.setdefault("request-id", self.request_id)
        call_next(message)

    def process(self, job: Job, call_next: ProcessFn) -> Outcome:
        calls.append(f"request-id={job.headers.get('request-id')}")
        outcome: Outcome = call_next(job)
        return outcome


# The plugin hook. In a package, the `taskmaster` entry point registers the
# module that holds it; here the script registers itself by hand below.
@hookimpl
def taskmaster_middleware() -> list[Middleware]:
    return [Trace("plugin")]


def handle(job: Job) -> Outcome:
    calls.append("handler")
    return ACK


def main() -> None:
    plugins = new_plugin_manager(load_entrypoints=False)
    plugins.register(sys.modules[__name__], name="example-middleware")

    with MemoryBroker() as broker:
        publisher = Publisher(broker, middleware=[RequestId("req-7")], plugins=plugins)
        publisher.put("q", {"hello": "world"})

        middleware = [Trace("first"), Trace("second"), RequestId("req-7")]
        with Consumer(broker, "q", handle, middleware=middleware, plugins=plugins) as consumer:
            assert consumer.wait_idle()

    print(" -> ".join(calls))


if __name__ == "__main__":
    main()
