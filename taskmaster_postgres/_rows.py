"""What the reading statements return, and how each row becomes a core type.

Each column list sits beside its row factory, and columns are matched by
name (``AS`` the field's name), never by position: a column added, removed
or reordered in a list changes the one decoder next to it, or fails loudly.
The statements in ``_sql`` compose these lists in.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from psycopg.rows import BaseRowFactory, kwargs_row

from taskmaster_core import ClaimedJob, JobInfo, JobState, QueueStats

__all__ = [
    "CLAIM_COLUMNS",
    "JOB_COLUMNS",
    "STATS_COLUMNS",
    "claimed_job_row",
    "job_info_row",
    "queue_stats_row",
]

# A claim's RETURNING (on the updated row ``j``), one column per ClaimedJob
# field. Times travel as epoch seconds, as ClaimedJob holds them.
CLAIM_COLUMNS = """
    j.id, j.queue, j.payload, j.serializer, j.priority, j.attempts AS attempt,
    j.max_attempts, extract(epoch FROM j.run_at)::float8 AS run_at,
    extract(epoch FROM j.created_at)::float8 AS created_at, j.headers,
    j.claim_token AS token
"""

claimed_job_row: BaseRowFactory[ClaimedJob] = kwargs_row(ClaimedJob)

# ``jobs()``: every stored field, one column per JobInfo field.
JOB_COLUMNS = """
    id, queue, state, payload, serializer, priority, attempts, max_attempts, run_at,
    created_at, updated_at, lease_until, last_error, dedup_key, headers
"""


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


def _job_info(
    *,
    state: str,
    payload: bytes,
    run_at: datetime,
    created_at: datetime,
    updated_at: datetime,
    lease_until: datetime | None,
    **fields: Any,
) -> JobInfo:
    return JobInfo(
        state=JobState(state),
        payload=bytes(payload),
        run_at=run_at.astimezone(UTC),
        created_at=created_at.astimezone(UTC),
        updated_at=updated_at.astimezone(UTC),
        lease_until=_utc(lease_until),
        **fields,
    )


job_info_row: BaseRowFactory[JobInfo] = kwargs_row(_job_info)

# ``stats()``: counts per queue, one column per QueueStats field.
STATS_COLUMNS = """
    queue,
    count(*) FILTER (WHERE state = 'queued' AND run_at <= now()) AS ready,
    count(*) FILTER (WHERE state = 'queued' AND run_at > now()) AS scheduled,
    count(*) FILTER (WHERE state = 'running') AS running,
    count(*) FILTER (WHERE state = 'failed') AS failed,
    count(*) FILTER (WHERE state = 'done') AS done,
    extract(epoch FROM now() - min(run_at) FILTER (
        WHERE state = 'queued' AND run_at <= now()))::float8 AS oldest_ready_age
"""


def _queue_stats(*, oldest_ready_age: float | None, **counts: Any) -> QueueStats:
    age = None if oldest_ready_age is None else max(0.0, oldest_ready_age)
    return QueueStats(oldest_ready_age=age, **counts)


queue_stats_row: BaseRowFactory[QueueStats] = kwargs_row(_queue_stats)
