"""``taskmaster worker APP`` with async handlers, in a real process: an APP
mixing a sync and an async consumer (tests/chaos/async_apps.py) runs both
queues' jobs, and SIGTERM stops it gracefully as it does a sync worker —
in-flight coroutines finish up to ``--stop-timeout``, then their tasks are
cancelled and their jobs retried at once; a second SIGTERM cancels at once;
nothing is left ``running``.

On Postgres the worker's ``--url`` names the test's schema
(``?schema=…&keep_done=true``), so acked jobs stay as ``done`` for the
checks; on ``memory://`` the app puts its own jobs when the worker calls it.
Every wait is on a state (a log line, a handler's event, a row), with a
generous timeout: nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row

from taskmaster_core import Publisher

from .async_apps import events
from .helpers import ROOT, TASKMASTER, ChaosDB, wait_for

CANCELLED = "cancelled: the consumer stopped before the handler finished"
EXIT_HANDLERS_ABANDONED = 3  # docs/cli.md, "Exit codes"


@dataclass
class App:
    """One run's queues (unique names) and the files the app talks through."""

    sync_queue: str
    async_queue: str
    events_path: Path
    release_path: Path

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "ASYNC_APP_SYNC_QUEUE": self.sync_queue,
            "ASYNC_APP_ASYNC_QUEUE": self.async_queue,
            "ASYNC_APP_EVENTS": str(self.events_path),
            "ASYNC_APP_RELEASE": str(self.release_path),
            **extra,
        }

    def events(self, event: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        return [
            e
            for e in events(self.events_path)
            if (event is None or e["event"] == event) and (kind is None or e["kind"] == kind)
        ]

    def release(self) -> None:
        """Let every handler waiting on the release file finish."""
        self.release_path.touch()


class Worker:
    """A ``taskmaster --log-level INFO --url URL worker APP …`` process, its
    output (stdout and stderr) in a file."""

    def __init__(self, url: str, app: str, log: Path, args: list[str], env: dict[str, str]) -> None:
        command = (
            [str(TASKMASTER)]
            if TASKMASTER.exists()
            else [sys.executable, "-m", "taskmaster_core._cli"]
        )
        self.log_path = log
        with log.open("wb") as out:
            self.popen = subprocess.Popen(
                [*command, "--log-level", "INFO", "--url", url, "worker", app, *args],
                cwd=ROOT,
                env={**os.environ, "TASKMASTER_URL": "", **env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def __repr__(self) -> str:
        return f"<worker pid={self.popen.pid} rc={self.popen.poll()}>"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait_logged(self, text: str, timeout: float = 30.0) -> None:
        """Until the worker has logged ``text`` (it must not exit meanwhile)."""

        def logged() -> bool:
            if text in self.log():
                return True
            if not self.alive:
                raise AssertionError(f"{self} exited before logging {text!r}:\n{self.log()}")
            return False

        wait_for(logged, timeout, f"{self} logged {text!r}")

    def wait_ready(self) -> None:
        self.wait_logged("worker running 2 consumer(s): sync, async")

    def sigterm(self) -> None:
        os.kill(self.popen.pid, signal.SIGTERM)

    def wait(self, timeout: float = 30.0) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self} still running after {timeout}s:\n{self.log()}") from None

    def kill(self) -> None:
        if self.alive:
            self.popen.kill()
            self.popen.wait(30)


Spawn = Callable[..., Worker]
"""``spawn(url, app, *args, env=…)``: a started worker."""


@pytest.fixture
def app(tmp_path: Path) -> App:
    tag = uuid.uuid4().hex[:10]
    return App(
        sync_queue=f"async-worker-sync-{tag}",
        async_queue=f"async-worker-async-{tag}",
        events_path=tmp_path / "events.jsonl",
        release_path=tmp_path / "release",
    )


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """``spawn(url, app, *args, env=…)`` starts a worker; all are killed at the end."""
    started: list[Worker] = []

    def start(url: str, app: str, *args: str, env: dict[str, str]) -> Worker:
        log = tmp_path / f"worker-{len(started)}.log"
        worker = Worker(url, app, log, list(args), env)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill()


def worker_url(chaos: ChaosDB) -> str:
    """A ``postgresql://`` URL for the test's schema, keep-done (acked jobs
    stay as ``done``): ``--url`` carries broker options in its query string."""
    params = {k: str(v) for k, v in conninfo_to_dict(chaos.dsn).items()}
    params.update(schema=chaos.schema, keep_done="true")
    return f"postgresql://?{urlencode(params)}"


def jobs(chaos: ChaosDB, ids: list[int]) -> dict[int, dict[str, Any]]:
    """Each job's row: state, attempts, last_error, lease_until, run_at <= now."""
    with chaos.conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            sql.SQL(
                "SELECT id, state, attempts, last_error, lease_until,"
                " run_at <= now() AS due FROM {} WHERE id = ANY(%s)"
            ).format(chaos.broker.names.qualified),
            [ids],
        )
        return {row["id"]: row for row in cur.fetchall()}


def states(chaos: ChaosDB, ids: list[int]) -> dict[int, str]:
    return {job_id: row["state"] for job_id, row in jobs(chaos, ids).items()}


def put(chaos: ChaosDB, queue: str, payloads: list[dict[str, Any]]) -> list[int]:
    ids = Publisher(chaos.broker).put_many(queue, payloads)
    assert None not in ids
    return [i for i in ids if i is not None]


# -- Postgres ------------------------------------------------------------------


@pytest.mark.chaos
@pytest.mark.postgres
def test_a_mixed_app_runs_both_queues_and_exits_0_on_sigterm(
    chaos: ChaosDB, app: App, spawn: Spawn
) -> None:
    sync_ids = put(chaos, app.sync_queue, [{"do": "ack"} for _ in range(20)])
    async_ids = put(chaos, app.async_queue, [{"do": "ack"} for _ in range(20)])
    worker = spawn(worker_url(chaos), "tests.chaos.async_apps:mixed", env=app.env())
    worker.wait_ready()
    everything = sync_ids + async_ids
    wait_for(lambda: set(states(chaos, everything).values()) == {"done"}, 30, "every job done")
    worker.sigterm()
    assert worker.wait() == 0, worker.log()

    # Each job ran once, through the handler of its queue: the sync one on a
    # worker thread, the async one as a task on the consumer's event loop.
    ends = app.events("end")
    assert sorted(e["id"] for e in ends if e["kind"] == "sync") == sorted(sync_ids)
    assert sorted(e["id"] for e in ends if e["kind"] == "async") == sorted(async_ids)
    assert {(e["kind"], e["queue"], e["loop"]) for e in ends} == {
        ("sync", app.sync_queue, False),
        ("async", app.async_queue, True),
    }
    assert len({e["thread"] for e in ends if e["kind"] == "async"}) == 1  # one loop thread
    assert not app.events("cancelled")
    assert {row["attempts"] for row in jobs(chaos, everything).values()} == {1}
    assert "worker stopped cleanly" in worker.log()
    assert "Traceback" not in worker.log()


@pytest.mark.chaos
@pytest.mark.postgres
def test_sigterm_lets_in_flight_async_handlers_finish(
    chaos: ChaosDB, app: App, spawn: Spawn
) -> None:
    async_ids = put(chaos, app.async_queue, [{"do": "wait"} for _ in range(4)])
    sync_ids = put(chaos, app.sync_queue, [{"do": "wait"} for _ in range(2)])
    everything = async_ids + sync_ids
    worker = spawn(
        worker_url(chaos),
        "tests.chaos.async_apps:mixed",
        "--stop-timeout",
        "60s",
        env=app.env(ASYNC_APP_CONCURRENCY="4"),
    )
    wait_for(lambda: len(app.events("start")) == 6, 30, "all six handlers started")
    # The four coroutines are in flight at once, on one event loop thread.
    async_starts = app.events("start", "async")
    assert sorted(e["id"] for e in async_starts) == sorted(async_ids)
    assert len({e["thread"] for e in async_starts}) == 1

    worker.sigterm()
    worker.wait_logged("SIGTERM received: stopping")
    # Stopping, and the handlers cannot have finished: their jobs are running.
    assert set(states(chaos, everything).values()) == {"running"}
    app.release()
    assert worker.wait() == 0, worker.log()

    assert states(chaos, everything) == dict.fromkeys(everything, "done")
    assert {row["attempts"] for row in jobs(chaos, everything).values()} == {1}
    assert sorted(e["id"] for e in app.events("end")) == sorted(everything)
    assert not app.events("cancelled")
    assert CANCELLED not in worker.log()
    assert "worker stopped cleanly" in worker.log()


@pytest.mark.chaos
@pytest.mark.postgres
def test_async_handlers_outliving_the_stop_timeout_are_cancelled_and_retried_at_once(
    chaos: ChaosDB, app: App, spawn: Spawn
) -> None:
    # Attempt 1 never returns; attempt 2 (the retry) acks. The consumer's
    # lease is 60 s: a job left running would still be running at the checks.
    stuck = put(chaos, app.async_queue, [{"script": ["block", "ack"]} for _ in range(2)])
    quick = put(chaos, app.sync_queue, [{"do": "ack"}])
    url = worker_url(chaos)
    worker = spawn(
        url,
        "tests.chaos.async_apps:mixed",
        "--stop-timeout",
        "1s",
        env=app.env(ASYNC_APP_CONCURRENCY="2", ASYNC_APP_LEASE="60"),
    )
    wait_for(lambda: len(app.events("start", "async")) == 2, 30, "both async handlers started")
    wait_for(lambda: states(chaos, quick) == {quick[0]: "done"}, 30, "the sync job done")
    worker.sigterm()
    code = worker.wait()
    log = worker.log()

    # The handlers saw CancelledError; their jobs are ready again at once,
    # the run counted as an attempt, the reason kept — none left running.
    cancelled = app.events("cancelled")
    assert sorted((e["id"], e["attempt"]) for e in cancelled) == [(i, 1) for i in sorted(stuck)]
    rows = jobs(chaos, stuck)
    for job_id in stuck:
        row = rows[job_id]
        assert row["state"] == "queued", row
        assert row["attempts"] == 1, row
        assert row["due"], row
        assert row["lease_until"] is None, row
        assert CANCELLED in (row["last_error"] or ""), row
    (stats,) = chaos.broker.stats([app.async_queue])
    assert (stats.ready, stats.running) == (2, 0)
    assert "running" not in {r.state for r in chaos.rows().values()}
    logged = [line for line in log.splitlines() if CANCELLED in line]
    assert len(logged) == 2 and all(" WARNING " in line for line in logged), log
    # docs/cli.md: 3 when running handlers had to be abandoned.
    assert code == EXIT_HANDLERS_ABANDONED, log

    # They are retried: the next worker runs attempt 2, which acks.
    again = spawn(url, "tests.chaos.async_apps:mixed", env=app.env())
    wait_for(lambda: states(chaos, stuck) == dict.fromkeys(stuck, "done"), 30, "the retries done")
    again.sigterm()
    assert again.wait() == 0, again.log()
    assert {row["attempts"] for row in jobs(chaos, stuck).values()} == {2}


@pytest.mark.chaos
@pytest.mark.postgres
def test_a_second_sigterm_cancels_async_handlers_at_once(
    chaos: ChaosDB, app: App, spawn: Spawn
) -> None:
    stuck = put(chaos, app.async_queue, [{"do": "block"} for _ in range(2)])
    stop_timeout = 600.0
    worker = spawn(
        worker_url(chaos),
        "tests.chaos.async_apps:mixed",
        "--stop-timeout",
        f"{stop_timeout:.0f}s",
        env=app.env(ASYNC_APP_CONCURRENCY="2"),
    )
    wait_for(lambda: len(app.events("start", "async")) == 2, 30, "both async handlers started")
    worker.sigterm()
    worker.wait_logged("SIGTERM received: stopping")
    assert worker.alive and not app.events("cancelled")  # waiting for its handlers
    hurried = time.monotonic()
    worker.sigterm()
    code = worker.wait(60)  # far less than the stop timeout
    took = time.monotonic() - hurried
    log = worker.log()
    assert took < stop_timeout / 2, (took, log)
    assert "SIGTERM received again: not waiting for running jobs" in log

    assert sorted(e["id"] for e in app.events("cancelled")) == sorted(stuck)
    rows = jobs(chaos, stuck)
    assert {(r["state"], r["attempts"], r["due"]) for r in rows.values()} == {("queued", 1, True)}
    assert all(CANCELLED in (r["last_error"] or "") for r in rows.values()), rows
    assert "running" not in {r.state for r in chaos.rows().values()}
    assert code == EXIT_HANDLERS_ABANDONED, log


# -- memory:// -------------------------------------------------------------------


@pytest.mark.chaos
def test_a_mixed_app_on_the_memory_broker(app: App, spawn: Spawn) -> None:
    to_put = {
        app.sync_queue: [{"do": "ack"} for _ in range(10)],
        app.async_queue: [{"do": "ack"} for _ in range(10)],
    }
    worker = spawn(
        "memory://",
        "tests.chaos.async_apps:memory_mixed",
        env=app.env(ASYNC_APP_PUT=json.dumps(to_put)),
    )
    wait_for(lambda: len(app.events("end")) == 20, 30, "every job handled")
    worker.sigterm()
    assert worker.wait() == 0, worker.log()
    ends = app.events("end")
    assert sorted((e["queue"], e["kind"], e["loop"]) for e in ends) == sorted(
        [(app.sync_queue, "sync", False)] * 10 + [(app.async_queue, "async", True)] * 10
    )
    assert len({e["id"] for e in ends}) == 20  # each once
    assert "worker stopped cleanly" in worker.log()


@pytest.mark.chaos
def test_the_memory_broker_worker_cancels_async_handlers_at_the_stop_timeout(
    app: App, spawn: Spawn
) -> None:
    to_put = {app.async_queue: [{"do": "block"}], app.sync_queue: [{"do": "ack"}]}
    worker = spawn(
        "memory://",
        "tests.chaos.async_apps:memory_mixed",
        "--stop-timeout",
        "500ms",
        env=app.env(ASYNC_APP_PUT=json.dumps(to_put)),
    )
    wait_for(lambda: app.events("start", "async") != [], 30, "the async handler started")
    wait_for(lambda: app.events("end", "sync") != [], 30, "the sync job handled")
    worker.sigterm()
    code = worker.wait()
    log = worker.log()
    assert [(e["event"], e["attempt"]) for e in app.events(kind="async")] == [
        ("start", 1),
        ("cancelled", 1),
    ]
    assert f"status=retry queue={app.async_queue}" in log, log
    assert CANCELLED in log
    assert code == EXIT_HANDLERS_ABANDONED, log


@pytest.mark.chaos
@pytest.mark.postgres
def test_a_second_sigterm_does_not_count_idle_sync_workers_as_abandoned(
    chaos: ChaosDB, app: App, spawn: Spawn
) -> None:
    """No handler is running anywhere: the hurried stop is clean (exit 0).
    The test holds the stop before the consumers' workers are stopped (the
    fetchers' claims wait on a lock on the jobs table), so the second
    SIGTERM reaches them there, every time."""
    worker = spawn(worker_url(chaos), "tests.chaos.async_apps:mixed", env=app.env())
    worker.wait_ready()
    pid = worker.popen.pid
    with psycopg.connect(chaos.dsn) as locker:
        locker.execute(
            sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(chaos.broker.names.qualified)
        )

        def claims_waiting() -> int:
            ((count,),) = chaos.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE application_name LIKE %s AND wait_event_type = 'Lock'",
                [f"taskmaster/{pid}/%"],
            )
            return int(count)

        wait_for(lambda: claims_waiting() >= 2, 30, "both consumers' claims waiting")
        worker.sigterm()
        worker.wait_logged("SIGTERM received: stopping")
        worker.sigterm()
        worker.wait_logged("SIGTERM received again")
        worker.wait_logged("worker stopped")
        locker.rollback()
    code = worker.wait()
    log = worker.log()
    # Expected (0, False); the idle sync consumer's worker threads, not yet
    # out of their loop when hurried, are reported as handlers still running.
    assert (code, "handler(s) still running" in log) == (0, False), log
