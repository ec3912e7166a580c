"""A worker application mixing a sync and an async consumer, for the tests of
``taskmaster worker APP`` with async handlers (tests/chaos/test_async_worker.py).

``mixed`` is the factory: it takes the broker the worker opened from
``--url`` (on Postgres the URL names the test's schema, ``?schema=…``) and
returns two consumers on that broker:

- ``sync``: the queue ``ASYNC_APP_SYNC_QUEUE``, a plain ``def`` handler on
  worker threads (concurrency 2);
- ``async``: the queue ``ASYNC_APP_ASYNC_QUEUE``, an ``async def`` handler
  run as tasks on the consumer's own event loop (concurrency
  ``ASYNC_APP_CONCURRENCY``, default 4; lease ``ASYNC_APP_LEASE`` seconds,
  default 60, so a job left ``running`` would stay so for the whole test).

What a run does is in its payload: ``{"do": "ack"}`` acks at once;
``{"do": "wait"}`` waits until the file ``ASYNC_APP_RELEASE`` exists, then
acks; ``{"do": "block"}`` never returns (an async handler until its task is
cancelled); ``{"script": ["block", "ack"]}`` picks the action by attempt
(the last one repeating).

Each handler appends one JSON line per event — ``start``, ``end`` (acked),
``cancelled`` (the async handler saw ``CancelledError``) — with the job's
queue, id and attempt, the handler's kind, its thread and whether an event
loop was running there, to the file ``ASYNC_APP_EVENTS`` (one ``write`` of a
line opened with ``O_APPEND``: whole lines, from any thread or process).

``memory_mixed`` is the same application for ``--url memory://``: the
broker lives in the worker's process, so the factory first puts the jobs
``ASYNC_APP_PUT`` lists (JSON: ``{"queue": [payload, …], …}``).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from taskmaster_core import ACK, Broker, Consumer, Job, Outcome, Publisher

__all__ = ["events", "memory_mixed", "mixed"]

_POLL = 0.02
"""How often a waiting handler looks for the release file."""


def _action(job: Job) -> str:
    payload = job.payload
    if "script" in payload:
        script = payload["script"]
        return str(script[min(job.attempt, len(script)) - 1])
    return str(payload.get("do", "ack"))


def _record(event: str, kind: str, job: Job) -> None:
    try:
        asyncio.get_running_loop()
        on_loop = True
    except RuntimeError:
        on_loop = False
    line = json.dumps(
        {
            "event": event,
            "kind": kind,
            "queue": job.queue,
            "id": job.id,
            "attempt": job.attempt,
            "pid": os.getpid(),
            "thread": threading.current_thread().name,
            "loop": on_loop,
        }
    )
    fd = os.open(os.environ["ASYNC_APP_EVENTS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _released() -> bool:
    return os.path.exists(os.environ["ASYNC_APP_RELEASE"])


def sync_handler(job: Job) -> Outcome:
    action = _action(job)
    _record("start", "sync", job)
    if action == "wait":
        while not _released():
            time.sleep(_POLL)
    elif action == "block":
        threading.Event().wait()
    elif action != "ack":
        raise AssertionError(f"unknown action {action!r}")
    _record("end", "sync", job)
    return ACK


async def async_handler(job: Job) -> Outcome:
    action = _action(job)
    _record("start", "async", job)
    try:
        if action == "wait":
            while not _released():
                await asyncio.sleep(_POLL)
        elif action == "block":
            await asyncio.Event().wait()
        elif action != "ack":
            raise AssertionError(f"unknown action {action!r}")
    except asyncio.CancelledError:
        _record("cancelled", "async", job)
        raise
    _record("end", "async", job)
    return ACK


def mixed(broker: Broker) -> list[Consumer]:
    """The factory ``taskmaster worker`` calls with the broker of ``--url``."""
    env = os.environ
    return [
        Consumer(
            broker,
            env["ASYNC_APP_SYNC_QUEUE"],
            sync_handler,
            concurrency=2,
            poll_interval=0.2,
            name="sync",
        ),
        Consumer(
            broker,
            env["ASYNC_APP_ASYNC_QUEUE"],
            async_handler,
            concurrency=int(env.get("ASYNC_APP_CONCURRENCY", "4")),
            lease=float(env.get("ASYNC_APP_LEASE", "60")),
            poll_interval=0.2,
            name="async",
        ),
    ]


def memory_mixed(broker: Broker) -> list[Consumer]:
    """``mixed`` on the worker's own memory broker, with its jobs put first."""
    publisher = Publisher(broker)
    for queue, payloads in json.loads(os.environ["ASYNC_APP_PUT"]).items():
        publisher.put_many(queue, payloads)
    return mixed(broker)


def events(path: Path) -> list[dict[str, Any]]:
    """What the handlers recorded, in order (a line still being written is
    left for the next look)."""
    if not path.exists():
        return []
    *lines, _partial = path.read_text(encoding="utf-8").split("\n")
    return [json.loads(line) for line in lines]
