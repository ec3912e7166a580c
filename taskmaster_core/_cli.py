"""The ``taskmaster`` command line: its parser, and ``main``.

Exit codes: 0 success; 1 the operation failed (e.g. the database is
unreachable); 2 a usage error (bad arguments, bad URL, bad JSON). Errors are
one line on stderr, never a traceback for a user mistake. What the broker
failed at is told by the error's type (``_errors``), never by its text.
The commands are in ``_cli_commands``, the argument types in ``_cli_args``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from . import _cli_commands as cmd
from ._broker import Broker
from ._cli_args import (
    EXIT_FAILED,
    EXIT_USAGE,
    Parser,
    UsageError,
    duration,
    glue_negative_values,
    job_id,
    positive_int,
    queue_list,
    states,
    timestamp,
    usage_line,
)
from ._errors import (
    BrokerError,
    ConfigurationError,
    PayloadTooLargeError,
    SchemaMissingError,
    SerializationError,
    TaskmasterError,
)
from ._logging import configure_logging
from ._plugins import enable_plugins, open_broker
from ._types import JobState

__all__ = ["main"]

DEFAULT_URL = "memory://"
_EMBEDDED_OK = frozenset({"demo"})
"""Commands that make sense on the embedded memory broker when no URL is given."""


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


DEFAULT_BATCH_SIZE = 10_000


def _add_batch_size(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=DEFAULT_BATCH_SIZE,
        help=f"jobs deleted per transaction (default {DEFAULT_BATCH_SIZE:,})",
    )


def _parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="taskmaster",
        description="Background jobs on Postgres, with an in-memory broker for tests.",
    )
    _add_common(parser, defaults=True)
    # The same options after the command name (`taskmaster worker --url ...`).
    common = Parser(add_help=False)
    _add_common(common, defaults=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], **kwargs)
        sub.set_defaults(command_parser=sub)  # for errors found after parsing
        return sub

    demo = command("demo", help="run the demo: put jobs, consume them, summarize")
    demo.add_argument("--jobs", type=positive_int, default=10_000, help="default 10000")
    demo.add_argument("--concurrency", type=positive_int, default=3, help="default 3")
    demo.add_argument("--no-progress", action="store_true", help="no live progress line")
    demo.set_defaults(run=cmd.cmd_demo)

    worker = command(
        "worker",
        help="run the consumers of an application until SIGTERM/SIGINT",
        description=(
            "APP is module:attribute naming a Consumer, a list of consumers, or a factory "
            "called with the broker opened from --url. First SIGTERM/SIGINT: graceful stop; "
            "second: stop waiting for running jobs. Exit 0 when stopped cleanly, 3 when "
            "handlers were still running at the stop timeout (their jobs are retried: "
            "a sync handler's after its lease expires, an async handler's, cancelled, at once)."
        ),
    )
    worker.add_argument("app", metavar="APP", help="module:attribute")
    worker.add_argument(
        "--queues",
        type=queue_list,
        default=None,
        help="comma-separated: run only the app's consumers of these queues",
    )
    worker.add_argument(
        "--concurrency", type=positive_int, default=None, help="overrides the app's"
    )
    worker.add_argument(
        "--stop-timeout",
        type=duration,
        default=30.0,
        help="how long running jobs may take to finish on stop (default 30s)",
    )
    worker.add_argument(
        "--log-format", choices=["text", "json"], default="text", help="default text"
    )
    worker.set_defaults(run=cmd.cmd_worker)

    migrate = command("migrate", help="create or upgrade the jobs table")
    migrate.add_argument(
        "--dry-run", action="store_true", help="print the SQL migrate would run; change nothing"
    )
    migrate.set_defaults(run=cmd.cmd_migrate)

    put = command("put", help="put one job on a queue")
    put.add_argument("queue")
    put.add_argument("payload", help="JSON text, or @FILE to read it from a file")
    put.add_argument("--serializer", default="json", help="serializer name (default json)")
    put.add_argument("--priority", type=int, default=0, help="higher runs first (default 0)")
    put.add_argument("--delay", type=duration, default=0.0, help="e.g. 30, 30s, 5m, 2h")
    put.add_argument("--at", type=timestamp, default=None, help="ISO 8601 time with zone")
    put.add_argument(
        "--dedup-key", default=None, help="skip the put if an unfinished job has this key"
    )
    put.add_argument(
        "--max-attempts", type=positive_int, default=None, help="runs before failing (default 3)"
    )
    put.set_defaults(run=cmd.cmd_put)

    stats = command("stats", help="jobs per queue and state")
    stats.add_argument("queues", nargs="*", help="only these queues")
    stats.add_argument("--json", action="store_true", help="machine-readable output")
    stats.set_defaults(run=cmd.cmd_stats)

    pause = command("pause", help="stop every worker claiming the jobs of queues")
    pause.add_argument("queues", nargs="+", help="queue names")
    pause.set_defaults(run=cmd.cmd_pause)

    resume = command("resume", help="let workers claim the jobs of paused queues again")
    resume.add_argument("queues", nargs="+", help="queue names")
    resume.set_defaults(run=cmd.cmd_resume)

    failed = command("failed", help="list failed jobs with their last error")
    failed.add_argument("--queue", default=None, help="only this queue")
    failed.add_argument("--limit", type=positive_int, default=50, help="at most (default 50)")
    failed.add_argument("--json", action="store_true", help="machine-readable output")
    failed.set_defaults(run=cmd.cmd_failed)

    requeue = command("requeue", help="move failed jobs back to their queue")
    requeue.add_argument("ids", nargs="*", type=job_id, help="failed job ids")
    requeue.add_argument("--queue", default=None, help="all failed jobs of this queue")
    requeue.add_argument("--all", action="store_true", help="all failed jobs of every queue")
    requeue.set_defaults(run=cmd.cmd_requeue)

    delete = command("delete", help="delete jobs")
    delete.add_argument("ids", nargs="*", type=job_id, help="job ids")
    delete.add_argument("--queue", default=None, help="every job of this queue")
    delete.add_argument(
        "--state",
        action="append",
        type=states(list(JobState)),
        metavar="{queued,running,done,failed}",
        help="only jobs in this state (repeatable)",
    )
    _add_batch_size(delete)
    delete.set_defaults(run=cmd.cmd_delete)

    prune = command("prune", help="delete finished jobs older than a duration")
    prune.add_argument("--older-than", type=duration, required=True, help="e.g. 7d, 12h")
    prune.add_argument(
        "--state",
        action="append",
        type=states([JobState.DONE, JobState.FAILED]),
        metavar="{done,failed}",
        help="done (default) and/or failed",
    )
    prune.add_argument("--queue", default=None, help="only this queue")
    _add_batch_size(prune)
    prune.set_defaults(run=cmd.cmd_prune)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, unknown = parser.parse_known_args(
        glue_negative_values(sys.argv[1:] if argv is None else argv)
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
    try:
        broker = open_broker(url)
        broker.open()
        try:
            if args.command == "demo":
                broker.migrate()
            return run(args, broker)
        except BrokerError as exc:
            _error(exc, _could_not(args.command, exc))
            return EXIT_FAILED
        finally:
            broker.close()
    except UsageError as exc:
        print(usage_line(f"taskmaster {args.command}", str(exc)), end="", file=sys.stderr)
        return EXIT_USAGE
    except BrokerError as exc:  # opening failed (a BrokerConfigurationError too)
        _error(exc)
        return EXIT_FAILED
    except (ConfigurationError, SerializationError, PayloadTooLargeError) as exc:
        _error(exc)  # the input was refused: nothing was stored
        return EXIT_USAGE
    except TaskmasterError as exc:  # the operation failed
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
    "pause": "pause the queues",
    "resume": "resume the queues",
    "failed": "list failed jobs",
    "requeue": "requeue failed jobs",
    "delete": "delete jobs",
    "prune": "prune jobs",
}
"""What each command does, for ``could not …`` when the broker fails."""


def _could_not(command: str, exc: BrokerError) -> str:
    """``could not <what the command does> on <where>: <the broker's reason>``:
    the broker's message names its own method ("jobs failed on …", which reads
    as if jobs had failed), so the CLI says what the command could not do."""
    doing = f"could not {_DOING.get(command, command)}"
    if exc.where is None or exc.reason is None:
        return f"{doing}: {exc}"
    return f"{doing} on {exc.where}: {exc.reason}"


def _error(exc: BaseException, message: str | None = None) -> None:
    """One line on stderr: the first line of the message (a database error's
    LINE/caret context lines would only clutter a terminal), and what to do
    about a missing schema."""
    lines = (str(exc) if message is None else message).strip().splitlines()
    line = lines[0] if lines else type(exc).__name__
    if isinstance(exc, SchemaMissingError):
        line += " (run `taskmaster migrate` to create the jobs table)"
    print(f"taskmaster: error: {line}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
