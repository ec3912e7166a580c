"""The listener survives a database restart (on a server of its own)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from taskmaster_core import BrokerError
from taskmaster_postgres import PostgresBroker
from tests.pg_servers import own_server, restart

from .helpers import Recorder, job

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def server() -> Iterator[Any]:
    """A throwaway server this test may restart (never the shared one)."""
    with own_server() as started:
        yield started


def test_listener_and_pool_survive_a_server_restart(server: Any) -> None:
    with PostgresBroker(server.get_uri(), max_reconnect_backoff=0.5) as broker:
        broker.migrate()
        heard = Recorder()
        broker.subscribe(["q"], heard)
        restart(server)
        heard.wait_for(None, timeout=15)  # reconnected: catch-up wake-up
        deadline = time.monotonic() + 10
        while True:  # a pooled connection may still be the dead one: one failure allowed
            try:
                (job_id,) = broker.put([job("q")])
                break
            except BrokerError:
                if time.monotonic() > deadline:
                    raise
        heard.wait_for("q")
        assert [c.id for c in broker.claim(["q"], 1, 30)] == [job_id]
