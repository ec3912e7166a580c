"""Middleware, including the original Taskmaster's with-log / with-error test."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from taskmaster_core import (
    ACK,
    REJECT,
    ErrorReporter,
    Job,
    LoggingMiddleware,
    Middleware,
    Reject,
    Retry,
)
from taskmaster_core._middleware import compose_process
from taskmaster_core._types import ClaimedJob


def make_job(payload: Any = None) -> Job:
    claimed = ClaimedJob(
        id=42,
        queue="q",
        payload=b"null",
        serializer="json",
        priority=0,
        attempt=1,
        max_attempts=3,
        run_at=0.0,
        created_at=0.0,
        headers=None,
        token=7,
    )
    return Job(claimed, payload, None)


def throwing(job: Job) -> Any:
    raise RuntimeError("database is down")


def test_log_and_error_around_a_throwing_handler_rejects_and_logs_like_the_original(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reported: list[tuple[int, str]] = []
    chain = compose_process(
        [
            LoggingMiddleware(),
            ErrorReporter(lambda job, exc: reported.append((job.id, str(exc))), reject=True),
        ],
        throwing,
    )
    with caplog.at_level(logging.INFO, logger="taskmaster"):
        outcome = chain(make_job())
    assert isinstance(outcome, Reject)
    assert "RuntimeError: database is down" in outcome.reason
    assert reported == [(42, "database is down")]
    lines = [record.getMessage() for record in caplog.records]
    assert lines[0] == "status=start queue=q job=42 attempt=1"
    assert lines[1].startswith("status=failure queue=q job=42 attempt=1 error=")
    assert lines[2].startswith("status=reject queue=q job=42 attempt=1 time=")
    assert lines[2].endswith("ms")
    assert len(lines) == 3
    record = caplog.records[2]
    assert (record.queue, record.job_id, record.outcome) == ("q", 42, "reject")  # type: ignore[attr-defined]
    assert record.elapsed_ms >= 0  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("result", "status"),
    [(ACK, "ack"), (REJECT, "reject"), (Retry(1), "retry")],
)
def test_logging_names_each_outcome(
    caplog: pytest.LogCaptureFixture, result: Any, status: str
) -> None:
    chain = compose_process([LoggingMiddleware()], lambda job: result)
    with caplog.at_level(logging.INFO, logger="taskmaster"):
        assert chain(make_job()) is result
    assert caplog.records[-1].getMessage().startswith(f"status={status} ")


def test_logging_a_raising_handler_logs_failure_and_reraises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    chain = compose_process([LoggingMiddleware()], throwing)
    with caplog.at_level(logging.INFO, logger="taskmaster"), pytest.raises(RuntimeError):
        chain(make_job())
    assert caplog.records[-1].getMessage().startswith("status=failure ")


def test_error_reporter_reraises_by_default_so_the_retry_policy_applies() -> None:
    seen: list[BaseException] = []
    chain = compose_process([ErrorReporter(lambda job, exc: seen.append(exc))], throwing)
    with pytest.raises(RuntimeError):
        chain(make_job())
    assert len(seen) == 1


def test_a_failing_error_callback_does_not_change_the_outcome(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def bad_callback(job: Job, exc: BaseException) -> None:
        raise OSError("error tracker unreachable")

    chain = compose_process([ErrorReporter(bad_callback)], throwing)
    with pytest.raises(RuntimeError, match="database is down"):
        chain(make_job())
    assert "error callback failed" in caplog.text


def test_onion_order_and_short_circuit() -> None:
    order: list[str] = []

    class Layer(Middleware):
        def __init__(self, name: str, short: bool = False) -> None:
            self.name, self.short = name, short

        def process(self, job: Job, call_next: Any) -> Any:
            order.append(self.name)
            if self.short:
                return REJECT
            return call_next(job)

    chain = compose_process([Layer("outer"), Layer("inner", short=True)], lambda job: ACK)
    assert chain(make_job()) is REJECT
    assert order == ["outer", "inner"]


def test_middleware_errors_propagate() -> None:
    class Broken(Middleware):
        def process(self, job: Job, call_next: Any) -> Any:
            raise KeyError("oops")

    with pytest.raises(KeyError):
        compose_process([Broken()], lambda job: ACK)(make_job())


def test_publish_only_middleware_adds_no_processing_layer() -> None:
    class PublishOnly(Middleware):
        def publish(self, message: Any, call_next: Any) -> None:
            call_next(message)

    def handler(job: Job) -> Any:
        return ACK

    assert compose_process([PublishOnly()], handler) is handler
