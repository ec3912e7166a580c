"""Every handler outcome, and where each job ends up."""

from __future__ import annotations

from taskmaster_core import (
    ACK,
    REJECT,
    Consumer,
    Job,
    Publisher,
    Reject,
    Retry,
    RetryPolicy,
)
from taskmaster_memory import MemoryBroker


def handle(job: Job) -> object:
    action = job.payload["action"]
    if action == "ack":
        return ACK
    if action == "reject":
        return REJECT
    if action == "reject-with-reason":
        return Reject("customer account is closed")
    if action == "retry-then-ack":
        # Retry(delay) counts as an attempt; ack on the second one.
        return ACK if job.attempt >= 2 else Retry(delay=0.05)
    if action == "raise":
        raise ConnectionError("mail server unreachable")
    return "done!"  # not an outcome: the job fails with an error saying so


def main() -> None:
    actions = ["ack", "reject", "reject-with-reason", "retry-then-ack", "raise", "bad-return"]
    # keep_done=True keeps acked jobs as "done" so we can look at them.
    with MemoryBroker(keep_done=True) as broker:
        publisher = Publisher(broker, max_attempts=3)
        ids = {publisher.put("work", {"action": a}): a for a in actions}

        fast_backoff = RetryPolicy(base_delay=0.01, factor=2.0, jitter=0.0)
        with Consumer(broker, "work", handle, retry=fast_backoff, poll_interval=0.05) as consumer:
            assert consumer.wait_idle(scheduled=True)

        for info in broker.jobs(ids=[i for i in ids if i is not None]):
            error = (info.last_error or "").splitlines()[0] if info.last_error else "-"
            print(
                f"{ids[info.id]:<19} state={info.state:<6} "
                f"attempts={info.attempts}/{info.max_attempts} error={error}"
            )


if __name__ == "__main__":
    main()
