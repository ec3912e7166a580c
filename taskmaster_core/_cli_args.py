"""The command line's vocabulary: exit codes, usage errors, and the types
of its arguments (durations, times, states, ids)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import NoReturn

from ._types import JobState

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "Parser",
    "UsageError",
    "duration",
    "glue_negative_values",
    "job_id",
    "positive_int",
    "queue_list",
    "states",
    "timestamp",
    "usage_line",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A mistake in the command line (exit code 2), reported like argparse's
    own: naming the command and pointing at its help."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (like every other error of
    the CLI) that points at ``--help`` instead of printing the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, usage_line(self.prog, message))


def usage_line(prog: str, message: str) -> str:
    return f"{prog}: error: {message} (see '{prog} --help')\n"


_DURATION = re.compile(r"^\s*(-?)\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def duration(text: str) -> float:
    match = _DURATION.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration; use seconds or a number with ms, s, m, h or d"
        )
    if match.group(1):
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    return float(match.group(2)) * _UNITS[match.group(3)]


_NEGATIVE = re.compile(r"-\.?\d")


def glue_negative_values(argv: Sequence[str]) -> list[str]:
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


def states(allowed: list[JobState]) -> Callable[[str], JobState]:
    """The ``--state`` type: one of ``allowed``, named as plain words."""

    def state(text: str) -> JobState:
        if text not in allowed:
            names = ", ".join(s.value for s in allowed)
            raise argparse.ArgumentTypeError(f"{text!r} is not one of: {names}")
        return JobState(text)

    return state


def timestamp(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from exc
    if when.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone; add e.g. +00:00 or Z")
    return when.astimezone(UTC)


def queue_list(text: str) -> list[str]:
    queues = [q for q in text.split(",") if q]
    if not queues:
        raise argparse.ArgumentTypeError("--queues needs at least one queue name")
    return queues


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def job_id(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a job id") from None
