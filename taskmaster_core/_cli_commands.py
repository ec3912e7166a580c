"""The ``taskmaster`` commands: each takes the parsed arguments and the open
broker, prints its result, and returns the exit code."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import msgspec

from ._broker import Broker, PausesQueues, PlansMigrations
from ._cli_args import EXIT_FAILED, EXIT_OK, UsageError
from ._errors import ConfigurationError
from ._plugins import SerializerRegistry
from ._publisher import Publisher
from ._types import JobInfo, JobState

__all__ = [
    "cmd_delete",
    "cmd_demo",
    "cmd_failed",
    "cmd_migrate",
    "cmd_prune",
    "cmd_put",
    "cmd_requeue",
    "cmd_stats",
    "cmd_worker",
    "job_json",
]


def cmd_demo(args: argparse.Namespace, broker: Broker) -> int:
    from ._demo import run_demo

    summary = run_demo(
        broker,
        jobs=args.jobs,
        concurrency=args.concurrency,
        progress=not args.no_progress,
    )
    return EXIT_OK if summary["unfinished"] == 0 else EXIT_FAILED


def cmd_worker(args: argparse.Namespace, broker: Broker) -> int:
    from ._worker import load_app, run_worker

    sys.path.insert(0, os.getcwd())  # like python -m: the app module may sit here
    consumers = load_app(args.app, lambda: broker, queues=args.queues, concurrency=args.concurrency)
    # The process exits right after: keep the worker's signal handlers, so a
    # late second signal does not kill a worker that stopped cleanly.
    return run_worker(consumers, stop_timeout=args.stop_timeout, restore_signals=False)


def cmd_migrate(args: argparse.Namespace, broker: Broker) -> int:
    if args.dry_run:
        if not isinstance(broker, PlansMigrations):  # an optional ability
            raise UsageError(f"{type(broker).__name__} cannot show its migration SQL (--dry-run)")
        statements = broker.migration_sql()
        if not statements:
            print("-- the schema is up to date: migrate would change nothing")
        for statement in statements:
            print(f"{statement};\n")
        return EXIT_OK
    broker.migrate()
    print("schema is up to date")
    return EXIT_OK


def cmd_put(args: argparse.Namespace, broker: Broker) -> int:
    text = args.payload
    if text.startswith("@"):
        try:
            with open(text[1:], encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise UsageError(f"cannot read payload file {text[1:]!r}: {exc.strerror}") from exc
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"payload is not valid JSON: {exc}") from exc
    job_id = Publisher(broker, serializer=args.serializer).put(
        args.queue,
        payload,
        priority=args.priority,
        delay=args.delay,
        run_at=args.at,
        dedup_key=args.dedup_key,
        max_attempts=args.max_attempts,
    )
    if job_id is None:
        print(f"not put: an unfinished job with dedup key {args.dedup_key!r} exists")
    else:
        print(job_id)
    return EXIT_OK


def cmd_stats(args: argparse.Namespace, broker: Broker) -> int:
    stats = broker.stats(args.queues or None)
    if args.json:
        rows = [
            {
                "queue": s.queue,
                "ready": s.ready,
                "scheduled": s.scheduled,
                "running": s.running,
                "failed": s.failed,
                "done": s.done,
                "oldest_ready_age": s.oldest_ready_age,
                "paused": s.paused,
            }
            for s in stats
        ]
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    if not stats:
        print("no jobs")
        return EXIT_OK
    table = [["queue", "ready", "scheduled", "running", "failed", "done", "oldest ready"]]
    for s in stats:
        age = "-" if s.oldest_ready_age is None else f"{s.oldest_ready_age:.1f}s"
        name = f"{s.queue} (paused)" if s.paused else s.queue
        table.append(
            [name, *(f"{n:,}" for n in (s.ready, s.scheduled, s.running, s.failed, s.done)), age]
        )
    _print_table(table)
    return EXIT_OK


def cmd_pause(args: argparse.Namespace, broker: Broker) -> int:
    _pauser(broker).pause(args.queues)
    print(f"paused: {', '.join(args.queues)} (every worker stops claiming their jobs)")
    return EXIT_OK


def cmd_resume(args: argparse.Namespace, broker: Broker) -> int:
    _pauser(broker).resume(args.queues)
    print(f"resumed: {', '.join(args.queues)}")
    return EXIT_OK


def _pauser(broker: Broker) -> PausesQueues:
    if not isinstance(broker, PausesQueues):
        raise ConfigurationError(f"{broker!r} cannot pause queues (it is not PausesQueues)")
    return broker


def job_json(job: JobInfo, serializers: SerializerRegistry) -> dict[str, Any]:
    """Every field of a stored job; ``payload`` decoded by the job's own
    serializer (``null`` with ``payload_error`` when that fails, e.g. the
    serializer is not installed), ``payload_base64`` the stored bytes."""
    fields: dict[str, Any] = msgspec.to_builtins(job)
    fields["payload_base64"] = fields.pop("payload")
    try:
        payload = serializers.get(job.serializer).loads(job.payload)
        # Through msgspec's JSON encoder: whatever a serializer decoded (bytes,
        # non-string map keys, NaN) either becomes valid JSON or lands below.
        fields["payload"] = json.loads(msgspec.json.encode(payload))
    except Exception as exc:
        fields["payload"] = None
        fields["payload_error"] = str(exc)
    return fields


def cmd_failed(args: argparse.Namespace, broker: Broker) -> int:
    jobs = broker.jobs(queue=args.queue, states=[JobState.FAILED], limit=args.limit)
    if args.json:
        serializers = SerializerRegistry()
        print(json.dumps([job_json(j, serializers) for j in jobs], indent=2))
        return EXIT_OK
    if not jobs:
        print("no failed jobs")
        return EXIT_OK
    table = [["id", "queue", "attempts", "failed at", "last error"]]
    for j in jobs:
        error = (j.last_error or "").splitlines()[0] if j.last_error else ""
        table.append(
            [
                str(j.id),
                j.queue,
                f"{j.attempts}/{j.max_attempts}",
                j.updated_at.strftime("%Y-%m-%d %H:%M:%S"),
                error if len(error) <= 80 else error[:79] + "…",
            ]
        )
    _print_table(table)
    return EXIT_OK


def cmd_requeue(args: argparse.Namespace, broker: Broker) -> int:
    chosen = sum([bool(args.ids), args.queue is not None, args.all])
    if chosen != 1:
        raise UsageError("give exactly one of: job ids, --queue QUEUE, --all")
    moved = broker.requeue(ids=args.ids or None, queue=args.queue)
    print(f"requeued {moved} job(s)")
    return EXIT_OK


def cmd_delete(args: argparse.Namespace, broker: Broker) -> int:
    if not args.ids and args.queue is None:
        raise UsageError("give job ids or --queue QUEUE")
    ids = sorted(set(args.ids)) or None
    # At most as many as match now, so that jobs put while it runs cannot
    # keep it going for ever.
    bound = len(ids) if ids else _matching(broker, args.queue, args.state)
    deleted = _in_batches(
        "deleted",
        args.batch_size,
        lambda limit: broker.delete(ids=ids, queue=args.queue, states=args.state, limit=limit),
        bound=bound,
    )
    print(f"deleted {deleted} job(s)")
    return EXIT_OK


def _matching(broker: Broker, queue: str, states: list[JobState] | None) -> int:
    """Jobs of ``queue`` in ``states`` (all states when ``None``), now."""
    counts = {JobState.QUEUED: 0, JobState.RUNNING: 0, JobState.FAILED: 0, JobState.DONE: 0}
    for row in broker.stats([queue]):
        counts[JobState.QUEUED] += row.ready + row.scheduled
        counts[JobState.RUNNING] += row.running
        counts[JobState.FAILED] += row.failed
        counts[JobState.DONE] += row.done
    return sum(counts[JobState(s)] for s in (states or counts))


def cmd_prune(args: argparse.Namespace, broker: Broker) -> int:
    states = args.state or [JobState.DONE]
    started = time.monotonic()
    pruned = _in_batches(
        "pruned",
        args.batch_size,
        # The age grows with the run, so the cutoff stays where it was at the
        # start: jobs that finish meanwhile are not taken, and the set shrinks.
        lambda limit: broker.prune(
            args.older_than + (time.monotonic() - started),
            states=states,
            queue=args.queue,
            limit=limit,
        ),
    )
    print(f"pruned {pruned} job(s)")
    return EXIT_OK


def _in_batches(
    verb: str, size: int, batch: Callable[[int], int], *, bound: int | None = None
) -> int:
    """Call ``batch(n)`` (one short transaction on Postgres, so a large delete
    holds no long locks) until one finds nothing, or ``bound`` jobs are done.
    A batch can come back short while more remain — workers may have settled
    jobs it picked — so a short batch is not the end. On a terminal, show
    the running count on stderr. Returns the total; if stopped by an error
    or Ctrl-C, says on stdout how many went first."""
    progress = sys.stderr.isatty()
    total = 0
    try:
        while bound is None or total < bound:
            done = batch(size if bound is None else min(size, bound - total))
            if done == 0:
                break
            total += done
            if progress:
                sys.stderr.write(f"\r\033[K{verb} {total:,} job(s) so far…")
                sys.stderr.flush()
    except BaseException:
        if total:
            print(f"{verb} {total} job(s) before stopping")
        raise
    finally:
        if progress and total:
            sys.stderr.write("\r\033[K")
    return total


def _print_table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
