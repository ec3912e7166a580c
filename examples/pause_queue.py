"""Pausing a queue (docs/flow-control.md).

Run it: python examples/pause_queue.py
"""

import time

from taskmaster_core import ACK, Consumer, Job, Publisher
from taskmaster_memory import MemoryBroker

sent: list[str] = []


def send(job: Job) -> object:
    sent.append(job.payload)
    return ACK


with MemoryBroker() as broker:
    publisher = Publisher(broker)
    with Consumer(broker, ["emails", "reports"], send, poll_interval=0.1) as consumer:
        broker.pause(["emails"])  # say the mail provider is down: stop sending
        publisher.put("emails", "welcome ada")  # puts are still taken
        publisher.put("reports", "daily report")
        time.sleep(0.5)
        print("while paused:", sent, [(s.queue, s.ready, s.paused) for s in broker.stats()])
        broker.resume(["emails"])  # the provider is back: workers pick the queue up at once
        assert consumer.wait_idle(10)
    print("after resume:", sent)
