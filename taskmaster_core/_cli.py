"""The ``taskmaster`` command line.

Exit codes: 0 success; 1 the operation failed (e.g. the database is
unreachable); 2 a usage error (bad arguments, bad URL, bad JSON). Errors are
one line on stderr, never a traceback for a user mistake.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn

import msgspec

from ._broker import Broker
from ._errors import BrokerError, ConfigurationError, TaskmasterError
from ._logging import configure_logging
from ._plugins import SerializerRegistry, enable_plugins, open_broker
from ._publisher import Publisher
from ._types import JobInfo, JobState

__all__ = ["main"]

DEFAULT_URL = "memory://"
_EMBEDDED_OK = frozenset({"demo"})
"""Commands that make sense on the embedded memory broker when no URL is given."""
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A mistake in the command line (exit code 2), reported like argparse's
    own: naming the command and pointing at its help."""


def _add_common(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """Options every command takes, before or after the command name."""

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--url",
        default=default(None),
        help=f"broker URL (default: $TASKMASTER_URL; demo: {DEFAULT_URL})",
    )
    parser.add_argument(
        "--log-level",
        default=default("WARNING"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log level for taskmaster.* loggers (default: WARNING)",
    )
    parser.add_argument(
        "--plugin",
        action="append",
        default=default([]),
        metavar="NAME",
        help="enable a plugin: prometheus, opentelemetry or a module path (repeatable; "
        "also $TASKMASTER_PLUGINS)",
    )


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (like every other error of
    the CLI) that points at ``--help`` instead of printing the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, _usage_line(self.prog, message))


def _usage_line(prog: str, message: str) -> str:
    return f"{prog}: error: {message} (see '{prog} --help')\n"


DEFAULT_BATCH_SIZE = 10_000


def _add_batch_size(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--batch-size",
        type=_positive_int,
        default=DEFAULT_BATCH_SIZE,
        help=f"jobs deleted per transaction (default {DEFAULT_BATCH_SIZE:,})",
    )


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="taskmaster",
        description="Background jobs on Postgres, with an in-memory broker for tests.",
    )
    _add_common(parser, defaults=True)
    # The same options after the command name (`taskmaster worker --url ...`).
    common = _Parser(add_help=False)
    _add_common(common, defaults=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], **kwargs)
        sub.set_defaults(command_parser=sub)  # for errors found after parsing
        return sub

    demo = command("demo", help="run the demo: put jobs, consume them, summarize")
    demo.add_argument("--jobs", type=_positive_int, default=10_000, help="default 10000")
    demo.add_argument("--concurrency", type=_positive_int, default=3, help="default 3")
    demo.add_argument("--no-progress", action="store_true", help="no live progress line")
    demo.set_defaults(run=_cmd_demo)

    worker = command(
        "worker",
        help="run the consumers of an application until SIGTERM/SIGINT",
        description=(
            "APP is module:attribute naming a Consumer, a list of consumers, or a factory "
            "called with the broker opened from --url. First SIGTERM/SIGINT: graceful stop; "
            "second: stop waiting for running jobs. Exit 0 when stopped cleanly, 3 when "
            "running handlers had to be abandoned (their jobs are retried)."
        ),
    )
    worker.add_argument("app", metavar="APP", help="module:attribute")
    worker.add_argument(
        "--queues",
        type=_queue_list,
        default=None,
        help="comma-separated: run only the app's consumers of these queues",
    )
    worker.add_argument(
        "--concurrency", type=_positive_int, default=None, help="overrides the app's"
    )
    worker.add_argument(
        "--stop-timeout",
        type=_duration,
        default=30.0,
        help="how long running jobs may take to finish on stop (default 30s)",
    )
    worker.add_argument(
        "--log-format", choices=["text", "json"], default="text", help="default text"
    )
    worker.set_defaults(run=_cmd_worker)

    migrate = command("migrate", help="create or upgrade the jobs table")
    migrate.add_argument(
        "--dry-run", action="store_true", help="print the SQL migrate would run; change nothing"
    )
    migrate.set_defaults(run=_cmd_migrate)

    put = command("put", help="put one job on a queue")
    put.add_argument("queue")
    put.add_argument("payload", help="JSON text, or @FILE to read it from a file")
    put.add_argument("--serializer", default="json", help="serializer name (default json)")
    put.add_argument("--priority", type=int, default=0, help="higher runs first (default 0)")
    put.add_argument("--delay", type=_duration, default=0.0, help="e.g. 30, 30s, 5m, 2h")
    put.add_argument("--at", type=_timestamp, default=None, help="ISO 8601 time with zone")
    put.add_argument(
        "--dedup-key", default=None, help="skip the put if an unfinished job has this key"
    )
    put.add_argument(
        "--max-attempts", type=_positive_int, default=None, help="runs before failing (default 3)"
    )
    put.set_defaults(run=_cmd_put)

    stats = command("stats", help="jobs per queue and state")
    stats.add_argument("queues", nargs="*", help="only these queues")
    stats.add_argument("--json", action="store_true", help="machine-readable output")
    stats.set_defaults(run=_cmd_stats)

    failed = command("failed", help="list failed jobs with their last error")
    failed.add_argument("--queue", default=None, help="only this queue")
    failed.add_argument("--limit", type=_positive_int, default=50, help="at most (default 50)")
    failed.add_argument("--json", action="store_true", help="machine-readable output")
    failed.set_defaults(run=_cmd_failed)

    requeue = command("requeue", help="move failed jobs back to their queue")
    requeue.add_argument("ids", nargs="*", type=_job_id, help="failed job ids")
    requeue.add_argument("--queue", default=None, help="all failed jobs of this queue")
    requeue.add_argument("--all", action="store_true", help="all failed jobs of every queue")
    requeue.set_defaults(run=_cmd_requeue)

    delete = command("delete", help="delete jobs")
    delete.add_argument("ids", nargs="*", type=_job_id, help="job ids")
    delete.add_argument("--queue", default=None, help="every job of this queue")
    delete.add_argument(
        "--state",
        action="append",
        type=_states(list(JobState)),
        metavar="{queued,running,done,failed}",
        help="only jobs in this state (repeatable)",
    )
    _add_batch_size(delete)
    delete.set_defaults(run=_cmd_delete)

    prune = command("prune", help="delete finished jobs older than a duration")
    prune.add_argument("--older-than", type=_duration, required=True, help="e.g. 7d, 12h")
    prune.add_argument(
        "--state",
        action="append",
        type=_states([JobState.DONE, JobState.FAILED]),
        metavar="{done,failed}",
        help="done (default) and/or failed",
    )
    prune.add_argument("--queue", default=None, help="only this queue")
    _add_batch_size(prune)
    prune.set_defaults(run=_cmd_prune)
    return parser


# -- commands -------------------------------------------------------------


def _cmd_demo(args: argparse.Namespace, broker: Broker) -> int:
    from ._demo import run_demo

    summary = run_demo(
        broker,
        jobs=args.jobs,
        concurrency=args.concurrency,
        progress=not args.no_progress,
    )
    return EXIT_OK if summary["unfinished"] == 0 else EXIT_FAILED


def _cmd_worker(args: argparse.Namespace, broker: Broker) -> int:
    from ._worker import load_app, run_worker

    sys.path.insert(0, os.getcwd())  # like python -m: the app module may sit here
    consumers = load_app(args.app, lambda: broker, queues=args.queues, concurrency=args.concurrency)
    return run_worker(consumers, stop_timeout=args.stop_timeout)


def _cmd_migrate(args: argparse.Namespace, broker: Broker) -> int:
    if args.dry_run:
        # Not part of the Broker protocol: a broker offers it if it can.
        planner: Callable[[], list[str]] | None = getattr(broker, "migration_sql", None)
        if planner is None:
            raise UsageError(f"{type(broker).__name__} cannot show its migration SQL (--dry-run)")
        statements = planner()
        if not statements:
            print("-- the schema is up to date: migrate would change nothing")
        for statement in statements:
            print(f"{statement};\n")
        return EXIT_OK
    broker.migrate()
    print("schema is up to date")
    return EXIT_OK


def _cmd_put(args: argparse.Namespace, broker: Broker) -> int:
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


def _cmd_stats(args: argparse.Namespace, broker: Broker) -> int:
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
        table.append(
            [s.queue, *(f"{n:,}" for n in (s.ready, s.scheduled, s.running, s.failed, s.done)), age]
        )
    _print_table(table)
    return EXIT_OK


def _job_json(job: JobInfo, serializers: SerializerRegistry) -> dict[str, Any]:
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


def _cmd_failed(args: argparse.Namespace, broker: Broker) -> int:
    jobs = broker.jobs(queue=args.queue, states=[JobState.FAILED], limit=args.limit)
    if args.json:
        serializers = SerializerRegistry()
        print(json.dumps([_job_json(j, serializers) for j in jobs], indent=2))
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
                error[:80],
            ]
        )
    _print_table(table)
    return EXIT_OK


def _cmd_requeue(args: argparse.Namespace, broker: Broker) -> int:
    chosen = sum([bool(args.ids), args.queue is not None, args.all])
    if chosen != 1:
        raise UsageError("give exactly one of: job ids, --queue QUEUE, --all")
    moved = broker.requeue(ids=args.ids or None, queue=args.queue)
    print(f"requeued {moved} job(s)")
    return EXIT_OK


def _cmd_delete(args: argparse.Namespace, broker: Broker) -> int:
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


def _cmd_prune(args: argparse.Namespace, broker: Broker) -> int:
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


# -- plumbing -------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, unknown = parser.parse_known_args(
        _glue_negative_values(sys.argv[1:] if argv is None else argv)
    )
    if unknown:  # said by the command's parser, so it points at the command's help
        args.command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    configure_logging(args.log_level, getattr(args, "log_format", "text"))
    url = args.url or os.environ.get("TASKMASTER_URL") or None
    try:
        enable_plugins(args.plugin)
    except ConfigurationError as exc:
        _error(exc)
        return EXIT_USAGE
    run: Callable[[argparse.Namespace, Broker], int] = args.run
    if url is None and args.command not in _EMBEDDED_OK:
        print(
            f"taskmaster: error: {args.command} needs a broker: pass --url or set TASKMASTER_URL "
            f"(e.g. postgresql://localhost/app; {DEFAULT_URL} would be a new, empty broker "
            "gone after this one command)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    url = url or DEFAULT_URL
    if args.command != "worker":
        # One-shot commands report a connection failure in one line of their own.
        logging.getLogger("psycopg").setLevel(logging.CRITICAL)
    try:
        broker = open_broker(url)
        broker.open()
        try:
            if args.command == "demo":
                broker.migrate()
            return run(args, broker)
        except BrokerError as exc:
            _error(_could_not(args.command, exc))
            return EXIT_FAILED
        finally:
            broker.close()
    except UsageError as exc:
        print(_usage_line(f"taskmaster {args.command}", str(exc)), end="", file=sys.stderr)
        return EXIT_USAGE
    except ConfigurationError as exc:
        _error(exc)
        return EXIT_USAGE
    except TaskmasterError as exc:  # BrokerError and the rest: the operation failed
        _error(exc)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("taskmaster: interrupted", file=sys.stderr)
        return 130


_DOING = {
    "demo": "run the demo",
    "worker": "start the worker",
    "migrate": "migrate the jobs table",
    "put": "put the job",
    "stats": "read the queue stats",
    "failed": "list failed jobs",
    "requeue": "requeue failed jobs",
    "delete": "delete jobs",
    "prune": "prune jobs",
}
"""What each command does, for ``could not …`` when the broker fails."""

# A broker's error names its own method ("jobs failed on …", which reads as
# if jobs had failed); the CLI says what the command could not do instead.
_BROKER_FAILED = re.compile(r"[\w -]+ failed on (?P<where>\S+): (?P<reason>.*)", re.S)


def _could_not(command: str, exc: BrokerError) -> str:
    """``could not <what the command does> on <where>: <the broker's reason>``."""
    doing = f"could not {_DOING.get(command, command)}"
    message = str(exc)
    match = _BROKER_FAILED.fullmatch(message)
    if match is None:
        return f"{doing}: {message}"
    return f"{doing} on {match['where']}: {match['reason']}"


def _error(exc: BaseException | str) -> None:
    """One line on stderr: the first line of the message (a database error's
    LINE/caret context lines would only clutter a terminal)."""
    lines = str(exc).strip().splitlines() or [type(exc).__name__]
    message = lines[0]
    if "does not exist" in message and "relation" in message:
        message += " (run `taskmaster migrate` to create the jobs table)"
    print(f"taskmaster: error: {message}", file=sys.stderr)


def _print_table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


_DURATION = re.compile(r"^\s*(-?)\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def _duration(text: str) -> float:
    match = _DURATION.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration; use seconds or a number with ms, s, m, h or d"
        )
    if match.group(1):
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    return float(match.group(2)) * _UNITS[match.group(3)]


_NEGATIVE = re.compile(r"-\.?\d")


def _glue_negative_values(argv: Sequence[str]) -> list[str]:
    """``--older-than -1d`` as ``--older-than=-1d``. argparse takes a value
    that starts with ``-`` (other than a plain number) for an option and
    says "expected one argument"; glued on, the value reaches the option's
    own check ("must not be negative"). No option of ours looks like ``-1``,
    so nothing else changes meaning."""
    glued: list[str] = []
    for arg in argv:
        previous = glued[-1] if glued else ""
        if (
            _NEGATIVE.match(arg)
            and previous.startswith("--")
            and "=" not in previous
            and "--" not in glued  # after "--" everything is positional
        ):
            glued[-1] = f"{previous}={arg}"
        else:
            glued.append(arg)
    return glued


def _states(allowed: list[JobState]) -> Callable[[str], JobState]:
    """The ``--state`` type: one of ``allowed``, named as plain words."""

    def state(text: str) -> JobState:
        if text not in allowed:
            names = ", ".join(s.value for s in allowed)
            raise argparse.ArgumentTypeError(f"{text!r} is not one of: {names}")
        return JobState(text)

    return state


def _timestamp(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from exc
    if when.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone; add e.g. +00:00 or Z")
    return when.astimezone(UTC)


def _queue_list(text: str) -> list[str]:
    queues = [q for q in text.split(",") if q]
    if not queues:
        raise argparse.ArgumentTypeError("--queues needs at least one queue name")
    return queues


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _job_id(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a job id") from None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
