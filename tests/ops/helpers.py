"""Running ``taskmaster`` as an operator would: real subprocesses, real Postgres.

The CLI's ``--url`` names a database, not a schema, so these tests use the
default table ``public.taskmaster_jobs`` of the session's test database
(``pg_dsn``); the ``cli_dsn`` fixture drops it before and after each test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from taskmaster_postgres import PostgresBroker
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
TASKMASTER = Path(sys.executable).with_name("taskmaster")
APP = "examples.component_app.app:make_consumers"


def taskmaster(
    dsn: str | None, *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run ``taskmaster [--url DSN] ARGS`` to completion."""
    url = ["--url", dsn] if dsn is not None else []
    return subprocess.run(
        [str(TASKMASTER), *url, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "TASKMASTER_URL": "", **(env or {})},
        check=False,
    )


def ok(dsn: str, *args: str, env: dict[str, str] | None = None) -> str:
    """Run a command that must succeed; its stdout."""
    result = taskmaster(dsn, *args, env=env)
    assert result.returncode == 0, f"taskmaster {' '.join(args)}: {result.stderr}"
    return result.stdout


class Worker:
    """A ``taskmaster worker`` subprocess, its stderr in a file."""

    def __init__(self, dsn: str, log: Path, *args: str, env: dict[str, str] | None = None):
        self.log = log
        self._stderr = log.open("w")
        self.process = subprocess.Popen(
            [str(TASKMASTER), "--url", dsn, "--log-level", "INFO", "worker", *args],
            cwd=ROOT,
            env={**os.environ, "TASKMASTER_URL": "", **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )

    def output(self) -> str:
        return self.log.read_text()

    def wait_ready(self, timeout: float = 15.0) -> None:
        def ready() -> bool:
            assert self.process.poll() is None, f"worker exited early:\n{self.output()}"
            return "worker running" in self.output()

        wait_until(ready, timeout=timeout, interval=0.02)

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def wait(self, timeout: float = 20.0) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"worker still running after {timeout}s:\n{self.output()}"
            ) from None

    def stop(self, timeout: float = 20.0) -> int:
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._stderr.close()


@contextmanager
def worker(dsn: str, log: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Worker]:
    """A running worker (ready), killed on the way out if still alive."""
    running = Worker(dsn, log, *args, env=env)
    try:
        running.wait_ready()
        yield running
    finally:
        running.kill()


def counts(broker: PostgresBroker, queue: str) -> dict[str, Any]:
    (stats,) = broker.stats([queue])
    return {
        "ready": stats.ready,
        "scheduled": stats.scheduled,
        "running": stats.running,
        "failed": stats.failed,
        "done": stats.done,
    }


def wait_for(predicate: Any, timeout: float = 20.0) -> None:
    wait_until(predicate, timeout=timeout, interval=0.02)


def elapsed_since(start: float) -> float:
    return time.monotonic() - start
