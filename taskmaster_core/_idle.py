"""``Consumer.wait_idle``: wait until a consumer's queues have nothing to do.

It polls ``broker.stats()`` (and the consumer's own ledger) every 20 ms: for
tests and scripts, not for a hot path.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from ._broker import Broker
from ._ledger import Ledger

__all__ = ["wait_idle"]

_POLL = 0.02
"""Seconds between two looks at the broker's counts."""


def wait_idle(
    broker: Broker,
    queues: Sequence[str],
    ledger: Ledger,
    gone: Callable[[], bool],
    timeout: float | None,
    scheduled: bool,
) -> bool:
    """``True`` once ``queues`` have no job ready or running (nor scheduled,
    if ``scheduled``) and ``ledger`` holds no job and no unrecorded outcome;
    ``False`` when ``timeout`` seconds pass first or ``gone()`` (the consumer
    stopped or died)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while not gone():
        counts = broker.stats(queues)
        busy = any(s.ready or s.running or (scheduled and s.scheduled) for s in counts)
        if not busy and ledger.idle():
            return True
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return False
        time.sleep(_POLL if remaining is None else min(_POLL, remaining))
    return False
