"""The worker application the chaos tests run in real processes:
``taskmaster worker tests.chaos.apps:worker --url …``.

Configured through ``CHAOS_*`` environment variables (the worker command takes
only ``APP``). The factory builds its own ``PostgresBroker`` from
``CHAOS_DSN``/``CHAOS_SCHEMA`` with ``keep_done=True`` (acked jobs stay as
``done``, so the tests can count them), since ``--url`` cannot carry a
schema or broker options.

What a job does is in its payload (see :func:`decide`). Before acting, the
handler records the run — job id, attempt, process id and what it is about
to do — in ``<schema>.chaos_runs`` on its own autocommit connection, so the
record survives a ``kill -9`` a moment later. The tests' accounting compares
these runs with the jobs table.
"""

from __future__ import annotations

import ctypes
import os
import random
import sys
import threading
import time
from typing import Any

import msgspec
import psycopg
import psycopg_pool
from psycopg import sql

from taskmaster_core import ACK, REJECT, Consumer, Job, Retry, RetryPolicy
from taskmaster_postgres import PostgresBroker

__all__ = ["INTENTS", "RETRYING", "RUNS_DDL", "RUNS_TABLE", "Counter", "decide", "worker"]

RUNS_TABLE = "chaos_runs"

RUNS_DDL = """
CREATE TABLE {} (
    job_id bigint NOT NULL,
    attempt integer NOT NULL,
    pid integer NOT NULL,
    intent text NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""

INTENTS = ("ack", "reject", "retry", "raise", "exit", "block", "segv")
"""What a handler run can do: ack, reject, ask for a retry, raise, raise
SystemExit (``sys.exit`` in the worker thread), never return, crash the
process with a segfault."""

RETRYING = frozenset({"retry", "raise", "exit", "block"})
"""Intents after which the job runs again (while attempts remain)."""

RANDOM_WEIGHTS = {"ack": 70, "reject": 8, "retry": 11, "raise": 11}


class Counter(msgspec.Struct):
    """The payload type of ``CHAOS_PAYLOAD_TYPE=counter`` consumers."""

    n: int
    do: str = "ack"


def decide(payload: Any, attempt: int, job_id: int, seed: int) -> tuple[str, float]:
    """(intent, seconds to sleep first) for one run of a job.

    ``{"do": "ack", "sleep": 0.1}``; ``{"script": ["raise", "ack"]}`` (the
    intent of each attempt, the last one repeating); ``{"do": "random"}``
    (drawn from ``seed``, the job id and the attempt, so a run can be
    replayed); ``"sleep_attempts": [1]`` limits the sleep to those attempts."""
    if isinstance(payload, Counter):
        return payload.do, 0.0
    rng = random.Random(f"{seed}:{job_id}:{attempt}")
    if "script" in payload:
        script = payload["script"]
        intent = script[min(attempt, len(script)) - 1]
    elif payload.get("do") == "random":
        intent = rng.choices(list(RANDOM_WEIGHTS), weights=list(RANDOM_WEIGHTS.values()))[0]
    else:
        intent = payload.get("do", "ack")
    pause = float(payload.get("sleep", 0.0))
    if payload.get("max_sleep"):
        pause = rng.uniform(0, float(payload["max_sleep"]))
    if "sleep_attempts" in payload and attempt not in payload["sleep_attempts"]:
        pause = 0.0
    return intent, pause


class RunLog:
    """Writes one row per handler run to ``<schema>.chaos_runs``."""

    def __init__(self, dsn: str, schema: str, size: int) -> None:
        self._insert = sql.SQL(
            "INSERT INTO {} (job_id, attempt, pid, intent) VALUES (%s, %s, %s, %s)"
        ).format(sql.Identifier(schema, RUNS_TABLE))
        self._pool: psycopg_pool.ConnectionPool[Any] = psycopg_pool.ConnectionPool(
            dsn, min_size=1, max_size=size, kwargs={"autocommit": True}, open=False
        )

    def open(self) -> None:
        self._pool.open(wait=True, timeout=30)

    def close(self) -> None:
        self._pool.close()

    def record(self, job: Job, intent: str) -> None:
        deadline = time.monotonic() + 60
        while True:  # the database may be restarting: the run must be recorded first
            try:
                with self._pool.connection(timeout=10) as conn:
                    conn.execute(self._insert, [job.id, job.attempt, os.getpid(), intent])
                return
            except psycopg.Error:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


class FrozenHeartbeat(PostgresBroker):
    """A broker whose lease extensions never reach the database: the
    heartbeat of a worker cut off from it (``CHAOS_NO_HEARTBEAT=1``)."""

    def extend(self, leases: Any, lease: float) -> list[int]:
        return []


class _Handler:
    def __init__(self, runs: RunLog, seed: int) -> None:
        self.runs = runs
        self.seed = seed

    def __call__(self, job: Job) -> Any:
        intent, pause = decide(job.payload, job.attempt, job.id, self.seed)
        self.runs.record(job, intent)
        if pause:
            time.sleep(pause)
        if intent == "ack":
            return ACK
        if intent == "reject":
            return REJECT
        if intent == "retry":
            return Retry(delay=0.05)
        if intent == "raise":
            raise RuntimeError(f"chaos: job {job.id} raised on attempt {job.attempt}")
        if intent == "exit":
            sys.exit(f"chaos: job {job.id} called sys.exit in its worker thread")
        if intent == "block":
            threading.Event().wait()  # never returns
        if intent == "segv":
            ctypes.string_at(0)  # a real segmentation fault: the process dies
        raise AssertionError(f"unknown intent {intent!r}")


def _float(name: str, default: float | None) -> float | None:
    value = os.environ.get(name)
    return default if value in (None, "") else float(value)  # type: ignore[arg-type]


def worker(url_broker: Any) -> Consumer:
    """The factory ``taskmaster worker`` calls (it ignores the ``--url`` broker)."""
    env = os.environ
    dsn, schema = env["CHAOS_DSN"], env["CHAOS_SCHEMA"]
    concurrency = int(env.get("CHAOS_CONCURRENCY", "4"))
    broker_class = FrozenHeartbeat if env.get("CHAOS_NO_HEARTBEAT") else PostgresBroker
    broker = broker_class(
        dsn,
        schema=schema,
        keep_done=True,
        pool_max_size=int(env.get("CHAOS_POOL", "3")),
        statement_timeout=_float("CHAOS_STATEMENT_TIMEOUT", None),
        connect_timeout=float(env.get("CHAOS_CONNECT_TIMEOUT", "10")),
        max_reconnect_backoff=0.5,
    )
    runs = RunLog(dsn, schema, size=min(concurrency, 3))
    runs.open()
    prefetch = env.get("CHAOS_PREFETCH")
    return Consumer(
        broker,
        env.get("CHAOS_QUEUES", "q").split(","),
        _Handler(runs, int(env.get("CHAOS_SEED", "0"))),
        concurrency=concurrency,
        prefetch=None if prefetch is None else int(prefetch),
        lease=float(env.get("CHAOS_LEASE", "1.5")),
        poll_interval=float(env.get("CHAOS_POLL", "0.25")),
        job_timeout=_float("CHAOS_JOB_TIMEOUT", None),
        payload_type=Counter if env.get("CHAOS_PAYLOAD_TYPE") == "counter" else None,
        retry=RetryPolicy(base_delay=0.02, factor=2.0, max_delay=0.2, jitter=0.5),
        name=f"chaos-{os.getpid()}",
    )
