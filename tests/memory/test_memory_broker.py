"""What is particular to the memory broker: its injectable clock, and that it
hands out copies (a handler mutating what it got changes nothing stored)."""

from __future__ import annotations

from taskmaster_core import JobState, NewJob, Settlement
from taskmaster_memory import MemoryBroker


def job(**fields: object) -> NewJob:
    return NewJob(queue="q", payload=b"{}", serializer="json", **fields)  # type: ignore[arg-type]


def test_the_clock_is_injectable_so_tests_never_sleep() -> None:
    now = [1_000_000.0]
    with MemoryBroker(clock=lambda: now[0]) as broker:
        broker.put([job(delay=3600)])
        assert broker.claim(["q"], 1, 30) == []
        now[0] += 3600
        (claimed,) = broker.claim(["q"], 1, 30)
        assert claimed.run_at == 1_003_600.0
        now[0] += 31  # the lease ran out: the next claim takes the job over
        (again,) = broker.claim(["q"], 1, 30)
        assert (again.id, again.attempt) == (claimed.id, 2)
        assert broker.settle([Settlement(id=claimed.id, token=claimed.token, kind="ack")]) == [
            claimed.id
        ]


def test_what_a_claim_hands_out_is_a_copy() -> None:
    with MemoryBroker() as broker:
        (job_id,) = broker.put([job(headers={"trace": "1"})])
        (claimed,) = broker.claim(["q"], 1, 30)
        assert claimed.headers is not None
        claimed.headers["trace"] = "changed"
        (stored,) = broker.jobs(ids=[job_id or 0])
        assert stored.headers == {"trace": "1"}
        assert stored.state is JobState.RUNNING
