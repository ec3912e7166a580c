"""The settler: sends the workers' outcomes to the broker in batches.

It waits for the first outcome, lets ``flush_interval`` pass so more can
join the batch, and records them in one ``settle`` call. A
``TaskmasterError`` from the broker (it is down) is retried with backoff —
after the consumer is closed, only a few times; any other exception ends the
settler, and the consumer with it. It wakes the fetcher when claiming had
paused for the backlog, and when a retry it just recorded falls due before
the next poll.
"""

from __future__ import annotations

import logging
import threading
import time

from ._broker import Broker
from ._errors import TaskmasterError
from ._fetcher import MAX_BACKOFF
from ._ledger import Ledger
from ._types import Settlement

__all__ = ["Settler"]

logger = logging.getLogger("taskmaster.consumer")

_DUE_SLACK = 0.002
"""Added to a local retry's due time so the claim does not come a hair early."""
_CLOSED_ATTEMPTS = 3
"""Failed attempts after which a closed settler gives up its last batch."""


class Settler:
    """Records outcomes (see the module docstring)."""

    def __init__(
        self,
        name: str,
        broker: Broker,
        ledger: Ledger,
        wake_fetcher: threading.Event,
        *,
        flush_interval: float,
        poll_interval: float,
    ) -> None:
        self.name = name
        self._broker = broker
        self._ledger = ledger
        self._wake_fetcher = wake_fetcher
        self._flush_interval = flush_interval
        self._poll_interval = poll_interval

    def run(self) -> None:
        ledger = self._ledger
        failures = 0
        batch: list[Settlement] = []
        while True:
            if batch:  # a batch that failed: retry it now that the backoff passed
                closed = ledger.closed
            else:
                closed = ledger.wait_for_outcomes()
                if self._flush_interval and not closed:
                    time.sleep(self._flush_interval)
            batch.extend(ledger.take_outcomes())
            if batch:
                try:
                    refused = self._broker.settle(batch)
                except TaskmasterError as exc:
                    failures += 1
                    if closed and failures > _CLOSED_ATTEMPTS:
                        logger.error(
                            "%s: could not record %d outcomes (%s); those jobs run again "
                            "when their lease expires",
                            self.name,
                            len(batch),
                            exc,
                        )
                        return
                    delay = min(MAX_BACKOFF, 0.05 * 2**failures)
                    logger.warning(
                        "%s: recording %d outcomes failed (%s); retrying in %.2fs",
                        self.name,
                        len(batch),
                        exc,
                        delay,
                    )
                    time.sleep(delay)
                    continue
                failures = 0
                if ledger.recorded(len(batch)):
                    self._wake_fetcher.set()  # claiming had paused for the backlog
                self._note_retries(batch)
                if refused:
                    logger.warning(
                        "%s: outcomes of jobs %s were refused: their lease was lost "
                        "and another worker may have run them",
                        self.name,
                        refused,
                    )
                batch = []
            if closed and not ledger.has_outcomes():
                return

    def _note_retries(self, batch: list[Settlement]) -> None:
        """Wake the fetcher when a retry this consumer just recorded falls due,
        instead of leaving it to the next poll."""
        soonest = min((s.delay for s in batch if s.kind == "retry"), default=None)
        if soonest is None or soonest >= self._poll_interval:
            return
        if self._ledger.note_due(time.monotonic() + soonest + _DUE_SLACK):
            self._wake_fetcher.set()  # let the fetcher shorten its wait
