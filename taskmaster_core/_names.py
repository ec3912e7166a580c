"""What every broker accepts as a queue name and a dedup key: one rule, here.

The limits are Postgres's (the production backend), and every broker enforces
them, so an application tested on the memory broker cannot store a name that
Postgres would refuse. ``Publisher`` checks before encoding; brokers check
again in ``put`` (a broker may be called directly), through
:func:`check_new_jobs`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from ._errors import ConfigurationError

if TYPE_CHECKING:
    from ._types import NewJob

__all__ = [
    "MAX_DEDUP_KEY_BYTES",
    "MAX_QUEUE_NAME_BYTES",
    "MAX_QUEUE_NAME_LENGTH",
    "check_dedup_key",
    "check_new_jobs",
    "check_queue_name",
    "check_queue_names",
]

MAX_QUEUE_NAME_LENGTH = 1000
"""Characters. Queue names travel as NOTIFY payloads (at most 8000 bytes)."""

MAX_QUEUE_NAME_BYTES = 2000
MAX_DEDUP_KEY_BYTES = 512
"""UTF-8 bytes. A B-tree index entry holds at most 2704 bytes, and the dedup
index holds queue name and dedup key together: 2000 + 512 bytes leave room
for the entry's overhead (1000 two-byte characters still make a valid name)."""


def check_queue_name(queue: object) -> str:
    """Return ``queue`` if every broker can store it, else raise
    ``ConfigurationError`` saying which rule it breaks."""
    if not isinstance(queue, str) or not queue:
        raise ConfigurationError(f"queue name must be a non-empty string, got {queue!r}")
    if len(queue) > MAX_QUEUE_NAME_LENGTH:
        raise ConfigurationError(
            f"queue name of {len(queue)} characters is over the limit of "
            f"{MAX_QUEUE_NAME_LENGTH} (queue names are sent as NOTIFY payloads)"
        )
    if "\x00" in queue:
        raise ConfigurationError(f"queue name {queue!r} contains a NUL character")
    size = len(queue.encode())
    if size > MAX_QUEUE_NAME_BYTES:
        raise ConfigurationError(
            f"queue name of {len(queue)} characters is {size} bytes in UTF-8, over the limit "
            f"of {MAX_QUEUE_NAME_BYTES} bytes (queue names are part of the table's indexes)"
        )
    return queue


def check_queue_names(queues: object) -> list[str]:
    """``queues`` (a sequence of names) as a list, each name checked as
    :func:`check_queue_name` does; a single string is refused, since it would
    pass as a sequence of one-letter names."""
    if isinstance(queues, str | bytes) or not isinstance(queues, Sequence | set | frozenset):
        raise ConfigurationError(f"queues must be a list of queue names, got {queues!r}")
    return [check_queue_name(queue) for queue in queues]


def check_dedup_key(key: object) -> str | None:
    """Return ``key`` (``None``: no dedup key) if every broker can store it,
    else raise ``ConfigurationError``."""
    if key is None:
        return None
    if not isinstance(key, str) or not key:
        raise ConfigurationError(f"dedup key must be a non-empty string or None, got {key!r}")
    if "\x00" in key:
        raise ConfigurationError(f"dedup key {key!r} contains a NUL character")
    size = len(key.encode())
    if size > MAX_DEDUP_KEY_BYTES:
        raise ConfigurationError(
            f"dedup key is {size} bytes in UTF-8, over the limit of {MAX_DEDUP_KEY_BYTES} "
            "bytes (dedup keys are part of a unique index); use a hash of a longer key"
        )
    return key


def check_new_jobs(jobs: Iterable[NewJob]) -> None:
    """Check every job's queue name and dedup key before a broker stores any."""
    for job in jobs:
        check_queue_name(job.queue)
        check_dedup_key(job.dedup_key)
