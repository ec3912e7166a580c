"""The listener survives a database restart (on a server of its own)."""

from __future__ import annotations

import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from taskmaster_core import BrokerError
from taskmaster_postgres import PostgresBroker
from tests.pg_fixtures import postgres_unavailable

from .helpers import Recorder, job

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def own_server() -> Iterator[Any]:
    """A throwaway server this test may restart (never the shared one)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pgserver.postgres_server import get_server
    except ImportError as exc:
        postgres_unavailable(f"restarting a server needs pgserver ({exc})")
    datadir = tempfile.mkdtemp(prefix="taskmaster-restart-")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = get_server(datadir, cleanup_mode="delete")
    try:
        yield server
    finally:
        server.cleanup()
        shutil.rmtree(datadir, ignore_errors=True)


def _restart(server: Any) -> None:
    import pgserver

    socket_dir = server.get_postmaster_info().socket_dir
    pgserver.pg_ctl(  # type: ignore[attr-defined]  # generated at import time
        ["-w", "-m", "fast", "restart", "-o", f"-h '' -k {socket_dir}", "-l", str(server.log)],
        pgdata=server.pgdata,
        user=server.system_user,
    )


def test_listener_and_pool_survive_a_server_restart(own_server: Any) -> None:
    with PostgresBroker(own_server.get_uri(), max_reconnect_backoff=0.5) as broker:
        broker.migrate()
        heard = Recorder()
        broker.subscribe(["q"], heard)
        _restart(own_server)
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
