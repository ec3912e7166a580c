"""``python -m examples.component_app``: the app on the memory broker."""

from __future__ import annotations

from taskmaster_core import JobState, Publisher
from taskmaster_memory import MemoryBroker

from .app import make_components, make_consumers, signup


def main() -> None:
    with MemoryBroker() as broker:
        components = make_components(broker)
        publisher = Publisher(broker)
        for email, name in [("ada@example.com", "Ada"), ("alan@example.com", "Alan")]:
            signup(publisher, email, name)
        signup(publisher, "not-an-email", "Nobody")

        consumers = make_consumers(broker, components)
        for consumer in consumers:
            consumer.start()
        try:
            for consumer in consumers:  # signups first: its handler puts the emails
                assert consumer.wait_idle()
        finally:
            for consumer in consumers:
                consumer.stop()

        print("users:", ", ".join(components.db.users()))
        sent = sorted(components.mailer.sent)  # the emails consumer runs 8 threads
        print("sent:", "; ".join(f"{to}: {subject}" for to, subject in sent))
        for info in broker.jobs(states=[JobState.FAILED]):
            print(f"failed: job {info.id} on {info.queue!r}: {info.last_error}")
        components.db.close()


if __name__ == "__main__":
    main()
