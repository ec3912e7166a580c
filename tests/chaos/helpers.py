"""Real worker processes, a schema per test, and the accounting every
chaos scenario ends with."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from taskmaster_postgres import PostgresBroker
from tests.pg_fixtures import unique_schema

from .apps import RETRYING, RUNS_DDL, RUNS_TABLE

ROOT = Path(__file__).resolve().parents[2]
TASKMASTER = Path(sys.executable).with_name("taskmaster")


def chaos_seed() -> int:
    """A seed for anything random, printed (pytest shows it on failure);
    ``CHAOS_SEED=<n>`` replays a run."""
    seed = int(os.environ.get("CHAOS_SEED") or random.randrange(2**32))
    print(f"chaos seed: {seed} (replay with CHAOS_SEED={seed})")
    return seed


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(interval)


class Worker:
    """One ``taskmaster worker tests.chaos.apps:worker`` process."""

    def __init__(self, popen: subprocess.Popen[bytes], log: Path) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.log_path = log

    def __repr__(self) -> str:
        return f"<Worker pid={self.pid} rc={self.popen.poll()}>"

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        if self.alive:
            os.kill(self.pid, sig)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class Row:
    state: str
    attempts: int
    max_attempts: int
    last_error: str | None


@dataclass(frozen=True)
class Run:
    job_id: int
    attempt: int
    pid: int
    intent: str


@dataclass
class Tally:
    states: Counter[str]
    runs: int
    reruns_after_death: int


@dataclass
class ChaosDB:
    """A schema of its own on ``dsn``: jobs table (keep-done), runs table,
    a broker for the test side, and the worker processes it started."""

    dsn: str
    schema: str
    broker: PostgresBroker
    conn: psycopg.Connection[Any]
    tmp: Path
    workers: list[Worker] = field(default_factory=list)

    def execute(self, query: Any, params: Any = None) -> list[tuple[Any, ...]]:
        """Run test-side SQL; reconnects if the server was restarted under it."""
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.conn.closed:
                    self.conn = psycopg.connect(self.dsn, autocommit=True)
                cur = self.conn.execute(query, params)
                return cur.fetchall() if cur.description else []
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                self.conn.close()
                time.sleep(0.1)

    # -- processes ---------------------------------------------------------

    def start_worker(self, *, stop_timeout: float = 10.0, **settings: Any) -> Worker:
        """Start a worker; ``settings`` become ``CHAOS_<NAME>`` variables
        (lease, concurrency, prefetch, poll, job_timeout, statement_timeout, …)."""
        env = {**os.environ, "CHAOS_DSN": self.dsn, "CHAOS_SCHEMA": self.schema}
        env.pop("TASKMASTER_URL", None)
        for name, value in settings.items():
            env[f"CHAOS_{name.upper()}"] = str(value)
        log = self.tmp / f"worker-{len(self.workers)}.log"
        command = (
            [str(TASKMASTER)]
            if TASKMASTER.exists()
            else [sys.executable, "-m", "taskmaster_core._cli"]
        )
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [
                    *command,
                    "--url",
                    self.dsn,
                    "worker",
                    "tests.chaos.apps:worker",
                    "--stop-timeout",
                    str(stop_timeout),
                ],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        worker = Worker(popen, log)
        self.workers.append(worker)
        return worker

    def wait_ready(self, *workers: Worker, timeout: float = 30.0) -> None:
        """Until each worker's consumer is subscribed (its LISTEN is in place)."""
        for worker in workers:

            def listening(w: Worker = worker) -> bool:
                if not w.alive:
                    raise AssertionError(f"{w} exited while starting:\n{w.log()}")
                ((count,),) = self.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE application_name LIKE %s AND query LIKE 'LISTEN %%'",
                    [f"taskmaster/{w.pid}/%"],
                )
                return bool(count)

            wait_for(listening, timeout, f"{worker} ready")

    def kill_all(self) -> None:
        for worker in self.workers:
            worker.signal(signal.SIGKILL)
        for worker in self.workers:
            worker.wait(30)

    # -- reading the tables ------------------------------------------------

    def rows(self) -> dict[int, Row]:
        found = self.execute(
            sql.SQL("SELECT id, state, attempts, max_attempts, last_error FROM {}").format(
                self.broker.names.qualified
            )
        )
        return {r[0]: Row(r[1], r[2], r[3], r[4]) for r in found}

    def runs(self) -> list[Run]:
        found = self.execute(
            sql.SQL("SELECT job_id, attempt, pid, intent FROM {}").format(
                sql.Identifier(self.schema, RUNS_TABLE)
            )
        )
        return [Run(*r) for r in found]

    def unfinished(self) -> int:
        ((count,),) = self.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE state IN ('queued', 'running')").format(
                self.broker.names.qualified
            )
        )
        return int(count)

    def wait_finished(self, timeout: float, *, workers: Iterable[Worker] = ()) -> None:
        """Until no job is queued or running (every worker given must stay alive)."""
        watched = list(workers)

        def finished() -> bool:
            for w in watched:
                if not w.alive:
                    raise AssertionError(f"{w} died:\n{w.log()[-3000:]}")
            return self.unfinished() == 0

        wait_for(finished, timeout, "all jobs finished", interval=0.05)

    # -- the accounting ----------------------------------------------------

    def account(
        self,
        put_ids: Iterable[int],
        *,
        died: Iterable[int] = (),
        allow_queued: bool = False,
    ) -> Tally:
        """Every job put is exactly one of done / failed / queued, none is
        missing or left running, and no job ran again unless its earlier run
        asked for a retry or its process died (``died``: pids killed, frozen
        or crashed) — then at most once more per such run."""
        expected = set(put_ids)
        dead = set(died)
        rows = self.rows()
        runs: dict[int, list[Run]] = defaultdict(list)
        for run in self.runs():
            runs[run.job_id].append(run)
        problems: list[str] = []
        if missing := expected - set(rows):
            problems.append(f"{len(missing)} jobs missing: {sorted(missing)[:20]}")
        if extra := set(rows) - expected:
            problems.append(f"{len(extra)} jobs nobody put: {sorted(extra)[:20]}")
        if strays := set(runs) - expected:
            problems.append(f"runs of jobs nobody put: {sorted(strays)[:20]}")
        reruns = 0
        for job_id, row in rows.items():
            mine = sorted(runs.get(job_id, []), key=lambda r: r.attempt)
            attempts = [r.attempt for r in mine]
            where = f"job {job_id} ({row}, runs {mine})"
            if row.state == "running":
                problems.append(f"{where}: left running")
            if row.state == "queued" and not allow_queued:
                problems.append(f"{where}: still queued")
            if len(set(attempts)) != len(attempts):
                problems.append(f"{where}: two runs under one claim")
            if len(mine) > row.attempts or (mine and max(attempts) > row.attempts):
                problems.append(f"{where}: more runs than attempts counted")
            for run in mine[:-1]:
                if run.pid in dead:
                    reruns += 1
                elif run.intent not in RETRYING:
                    problems.append(f"{where}: ran again after a run that ended with {run.intent}")
            last = mine[-1] if mine else None
            lost = last is not None and last.pid in dead
            if row.state == "done" and (last is None or last.intent != "ack"):
                problems.append(f"{where}: done, but its last run did not ack")
            if row.state == "failed" and last is not None and not lost:
                final = last.intent == "reject" or (
                    last.intent in RETRYING and last.attempt >= row.max_attempts
                )
                if not final:
                    problems.append(f"{where}: failed, but its last run did not end it")
            if (
                row.state == "queued"
                and last is not None
                and not lost
                and (last.intent not in RETRYING or last.attempt >= row.max_attempts)
            ):
                problems.append(f"{where}: queued, but its last run finished it")
        assert not problems, "accounting failed:\n" + "\n".join(problems[:30])
        return Tally(
            states=Counter(r.state for r in rows.values()),
            runs=sum(len(v) for v in runs.values()),
            reruns_after_death=reruns,
        )


@contextmanager
def chaos_db(dsn: str, tmp: Path, **broker_options: Any) -> Iterator[ChaosDB]:
    schema = unique_schema()
    broker_options.setdefault("keep_done", True)
    broker = PostgresBroker(dsn, schema=schema, **broker_options)
    db = ChaosDB(
        dsn=dsn, schema=schema, broker=broker, conn=psycopg.connect(dsn, autocommit=True), tmp=tmp
    )
    try:
        broker.open()
        broker.migrate()
        db.execute(sql.SQL(RUNS_DDL).format(sql.Identifier(schema, RUNS_TABLE)))
        yield db
    finally:
        db.kill_all()
        broker.close()
        db.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        db.conn.close()
