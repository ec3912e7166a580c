"""How often a claim sweeps up expired leases (reclaim_interval)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from taskmaster_core import JobState
from taskmaster_core.testing import Harness

from .helpers import job

pytestmark = pytest.mark.postgres


def test_a_claim_sweeps_expired_leases_at_most_every_reclaim_interval(
    make_pg_harness: Callable[..., Harness],
) -> None:
    harness = make_pg_harness(reclaim_interval=3600)
    broker: Any = harness.broker
    (job_id,) = broker.put([job()])
    assert len(broker.claim(["q"], 1, 10)) == 1  # swept (nothing); the interval starts
    harness.advance(11)
    assert broker.claim(["q"], 1, 10) == []  # expired, but not swept again yet
    assert broker.jobs(ids=[job_id])[0].state is JobState.RUNNING
    broker._claims.next_reclaim.clear()  # the interval has passed
    (again,) = broker.claim(["q"], 1, 10)
    assert (again.id, again.attempt) == (job_id, 2)


def test_a_full_sweep_sweeps_again_on_the_next_claim(
    make_pg_harness: Callable[..., Harness],
) -> None:
    harness = make_pg_harness(reclaim_interval=3600)
    broker: Any = harness.broker
    broker.put([job() for _ in range(1500)])
    assert len(broker.claim(["q"], 500, 10)) == 500
    assert len(broker.claim(["q"], 500, 10)) == 500
    assert len(broker.claim(["q"], 500, 10)) == 500
    harness.advance(11)
    broker._claims.next_reclaim.clear()
    assert len(broker.claim(["q"], 500, 10)) == 500  # sweeps 1,000 of the 1,500 expired
    assert len(broker.claim(["q"], 500, 10)) == 500  # a full sweep: sweeps again
    assert len(broker.claim(["q"], 500, 10)) == 500
    assert broker.claim(["q"], 500, 10) == []
    (stats,) = broker.stats()
    assert stats.running == 1500
