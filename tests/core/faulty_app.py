"""An application whose broker fails in a way no broker should: its
``claim`` raises ``RuntimeError`` (a bug, not a ``BrokerError``). For the test
that ``taskmaster worker`` exits non-zero when a consumer dies."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from taskmaster_core import ACK, Broker, ClaimedJob, Consumer, Job, Outcome

__all__ = ["make_consumers"]


class _ClaimRaises:
    """``broker`` with a ``claim`` that raises ``RuntimeError``."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker

    def claim(self, queues: Sequence[str], limit: int, lease: float) -> list[ClaimedJob]:
        raise RuntimeError("claim: a bug in the broker")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._broker, name)


def handle(job: Job) -> Outcome:
    return ACK


def make_consumers(broker: Broker) -> list[Consumer]:
    healthy = Consumer(broker, "fine", handle, poll_interval=0.05)
    faulty = Consumer(_ClaimRaises(broker), "faulty", handle, poll_interval=0.05)  # type: ignore[arg-type]
    return [healthy, faulty]
