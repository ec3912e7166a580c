"""Typed payloads: refused at put, failed (not crashed) at consume."""

from __future__ import annotations

import msgspec

from taskmaster_core import (
    ACK,
    Consumer,
    Job,
    JobState,
    Outcome,
    PayloadValidationError,
    Publisher,
    QueueOptions,
)
from taskmaster_memory import MemoryBroker


class Signup(msgspec.Struct):
    email: str
    plan: str = "free"


def welcome(job: Job) -> Outcome:
    signup: Signup = job.payload  # already decoded into a Signup
    print(f"welcome {signup.email} to the {signup.plan} plan")
    return ACK


def main() -> None:
    with MemoryBroker() as broker:
        publisher = Publisher(broker, queues={"signups": QueueOptions(payload_type=Signup)})
        publisher.put("signups", Signup(email="ada@example.com", plan="pro"))
        publisher.put("signups", {"email": "grace@example.com"})  # a dict of the right shape

        try:
            publisher.put("signups", {"plan": "pro"})  # no email
        except PayloadValidationError as exc:
            print(f"refused at put: {exc}")

        # A publisher that does not know the type (another service, the CLI...)
        # can still put a bad payload; the consumer then fails that job.
        Publisher(broker).put("signups", {"email": 42})

        with Consumer(broker, "signups", welcome, payload_type=Signup) as consumer:
            assert consumer.wait_idle()

        for info in broker.jobs(states=[JobState.FAILED]):
            print(f"failed at consume: job {info.id}: {info.last_error}")


if __name__ == "__main__":
    main()
