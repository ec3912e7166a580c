"""Two worker processes share one queue: every job is handled exactly once."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from taskmaster_core import Broker, open_broker
from taskmaster_core.testing import Harness
from taskmaster_postgres import PostgresBroker

from .helpers import job

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]

WORKER = textwrap.dedent(
    """
    import sys
    from taskmaster_core import Settlement
    from taskmaster_postgres import PostgresBroker

    dsn, schema = sys.argv[1], sys.argv[2]
    with PostgresBroker(dsn, schema=schema, pool_max_size=2) as broker:
        while True:
            claimed = broker.claim(["q"], 50, 60)
            if not claimed:
                if broker.stats(["q"])[0].queued == 0:
                    break
                continue
            for job in claimed:
                print(job.id)
            refused = broker.settle(
                [Settlement(id=j.id, token=j.token, kind="ack") for j in claimed]
            )
            assert refused == [], refused
    """
)


def test_two_processes_handle_10000_jobs_exactly_once(
    make_pg_harness: Callable[..., Harness], pg_dsn: str
) -> None:
    broker: Any = make_pg_harness().broker
    ids = broker.put([job("q", payload=b"%d" % i) for i in range(10_000)])
    assert None not in ids
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, pg_dsn, broker.names.schema],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [worker.communicate(timeout=120)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0]
    handled = [[int(line) for line in out.split()] for out in outputs]
    counts = Counter(i for part in handled for i in part)
    assert set(counts) == set(ids)
    assert max(counts.values()) == 1
    assert all(part for part in handled), "both processes should have taken a share"
    assert broker.jobs() == []


def test_the_url_hook_builds_a_postgres_broker(pg_dsn: str) -> None:
    url = "postgresql://user:pw@db.example/app"
    broker = open_broker(url, schema="s", keep_done=True)
    assert isinstance(broker, PostgresBroker)
    assert isinstance(broker, Broker)
    assert broker.keep_done
    assert "pw" not in repr(broker)


def test_exported_names() -> None:
    import taskmaster_postgres

    # "@py_builtins" and "@pytest_ar": pytest rewrites the modules of a distribution
    # with a pytest11 plugin (ours), adding these.
    public = {name for name in dir(taskmaster_postgres) if not name.startswith(("_", "@"))}
    assert set(taskmaster_postgres.__all__) == public
