"""Every job that fails or will run again leaves one log record on
``taskmaster.consumer``, whatever middleware is configured.

The level rule (docs/concepts.md#logging): INFO for what the handler asked
for (``Retry``, ``REJECT``), WARNING for a retry caused by an error (an
exception, ``job_timeout``), ERROR for a job that ends ``failed`` without the
handler asking (attempts used up, a bad return value, an undecodable payload).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from taskmaster_core import (
    ACK,
    REJECT,
    Consumer,
    ErrorReporter,
    Job,
    LoggingMiddleware,
    NewJob,
    Publisher,
    Reject,
    Retry,
    RetryPolicy,
)
from taskmaster_core._logging import JsonFormatter
from taskmaster_memory import MemoryBroker
from tests.waiting import wait_until

NO_BACKOFF = RetryPolicy(base_delay=0, jitter=0)


def handle(job: Job) -> Any:
    action = job.payload["action"]
    if action == "ack":
        return ACK
    if action == "raise":
        raise ConnectionError("mail server unreachable")
    if action == "reject":
        return REJECT
    if action == "reject-with-reason":
        return Reject("customer account is closed")
    if action == "retry":
        return Retry(delay=30)
    if action == "retry-now":
        return Retry(delay=0)
    return "done!"


def consumer_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "taskmaster.consumer"]


@pytest.fixture
def memory() -> Iterator[MemoryBroker]:
    with MemoryBroker() as broker:
        yield broker


def run(
    broker: MemoryBroker,
    caplog: pytest.LogCaptureFixture,
    action: str,
    *,
    max_attempts: int = 3,
    middleware: tuple[object, ...] = (),
) -> tuple[int, list[logging.LogRecord]]:
    job_id = Publisher(broker, plugins=False, max_attempts=max_attempts).put(
        "emails", {"action": action}
    )
    assert job_id is not None
    consumer = Consumer(
        broker, "emails", handle, plugins=False, retry=NO_BACKOFF, middleware=middleware
    )
    with caplog.at_level(logging.DEBUG, logger="taskmaster"):
        consumer.drain()
    return job_id, consumer_records(caplog)


def assert_names_the_job(record: logging.LogRecord, job_id: int, attempt: str) -> None:
    message = record.getMessage()
    assert "queue=emails" in message
    assert f"job={job_id} " in message
    assert f"attempt={attempt} " in message
    done, _, total = attempt.partition("/")
    fields = (record.queue, record.job_id, record.attempt, record.max_attempts)  # type: ignore[attr-defined]
    assert fields == ("emails", job_id, int(done), int(total))


def test_an_exception_that_will_be_retried_is_a_warning_with_its_traceback(
    memory: MemoryBroker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    job_id, records = run(memory, caplog, "raise")
    first = records[0]
    assert first.levelno == logging.WARNING
    assert_names_the_job(first, job_id, "1/3")
    assert "status=retry " in first.getMessage()
    assert "error=ConnectionError: mail server unreachable" in first.getMessage()
    assert first.exc_info is not None
    assert isinstance(first.exc_info[1], ConnectionError)
    assert "Traceback" not in first.getMessage()  # the traceback is in exc_info, once


def test_an_exception_on_the_last_attempt_is_an_error_and_the_job_failed(
    memory: MemoryBroker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    job_id, records = run(memory, caplog, "raise")
    assert [r.levelno for r in records] == [logging.WARNING, logging.WARNING, logging.ERROR]
    last = records[-1]
    assert_names_the_job(last, job_id, "3/3")
    assert "status=failed " in last.getMessage()
    assert "error=attempts used up (3/3): ConnectionError: mail server unreachable" in (
        last.getMessage()
    )
    assert last.exc_info is not None and isinstance(last.exc_info[1], ConnectionError)
    assert caplog.text.count("Traceback (most recent call last)") == 3  # one per attempt
    assert memory.jobs(ids=[job_id])[0].state == "failed"


def test_a_bad_return_value_fails_the_job_with_an_error_record(
    memory: MemoryBroker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    job_id, (record,) = run(memory, caplog, "bad-return")
    assert record.levelno == logging.ERROR
    assert_names_the_job(record, job_id, "1/3")
    assert "status=failed " in record.getMessage()
    assert "error=handler returned 'done!' (str); expected ACK" in record.getMessage()


@pytest.mark.parametrize(
    ("action", "reason"),
    [("reject", "rejected by handler"), ("reject-with-reason", "customer account is closed")],
)
def test_a_reject_is_the_handlers_decision_logged_at_info(
    memory: MemoryBroker, caplog: pytest.LogCaptureFixture, action: str, reason: str
) -> None:
    job_id, (record,) = run(memory, caplog, action)
    assert record.levelno == logging.INFO
    assert_names_the_job(record, job_id, "1/3")
    assert f"status=rejected queue=emails job={job_id} attempt=1/3 error={reason}" == (
        record.getMessage()
    )
    assert record.exc_info is None


def test_an_explicit_retry_is_info_with_its_delay(
    memory: MemoryBroker, caplog: pytest.LogCaptureFixture
) -> None:
    job_id, (record,) = run(memory, caplog, "retry")
    assert record.levelno == logging.INFO
    assert_names_the_job(record, job_id, "1/3")
    assert record.getMessage() == (
        f"status=retry queue=emails job={job_id} attempt=1/3 delay=30.00s error=retry requested"
    )


def test_an_explicit_retry_on_the_last_attempt_fails_the_job_with_an_error(
    memory: MemoryBroker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    job_id, records = run(memory, caplog, "retry-now", max_attempts=2)
    assert [r.levelno for r in records] == [logging.INFO, logging.ERROR]
    assert_names_the_job(records[1], job_id, "2/2")
    assert "status=failed " in records[1].getMessage()
    assert "error=attempts used up (2/2): retry requested" in records[1].getMessage()


def test_a_success_logs_nothing_at_info_or_above(
    memory: MemoryBroker, caplog: pytest.LogCaptureFixture
) -> None:
    _, records = run(memory, caplog, "ack")
    assert [r for r in records if r.levelno >= logging.INFO] == []


def test_an_undecodable_payload_is_an_error_naming_the_attempts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with MemoryBroker() as broker:
        (job_id,) = broker.put(
            [NewJob(queue="emails", payload=b"\xff{not json", serializer="json", max_attempts=3)]
        )
        assert job_id is not None
        with caplog.at_level(logging.INFO, logger="taskmaster"):
            Consumer(broker, "emails", handle, plugins=False).drain()
    (record,) = consumer_records(caplog)
    assert record.levelno == logging.ERROR
    assert_names_the_job(record, job_id, "1/3")
    assert "status=failed " in record.getMessage()
    assert "error=cannot decode payload: " in record.getMessage()


def test_a_timed_out_handler_is_a_warning_then_an_error_and_its_late_result_is_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = threading.Event()
    stuck_threads: list[threading.Thread] = []

    def stuck(job: Job) -> Any:
        stuck_threads.append(threading.current_thread())
        release.wait(10)
        raise RuntimeError("late result, discarded")

    caplog.set_level(logging.INFO, logger="taskmaster")
    with MemoryBroker() as broker:
        job_id = Publisher(broker, plugins=False, max_attempts=2).put("emails", {})
        assert job_id is not None
        consumer = Consumer(
            broker,
            "emails",
            stuck,
            plugins=False,
            job_timeout=0.2,
            retry=NO_BACKOFF,
            poll_interval=0.05,
        )
        with consumer:
            wait_until(lambda: broker.jobs(ids=[job_id])[0].state == "failed")
            release.set()  # both abandoned handlers now raise: that must not be logged
            for thread in stuck_threads:
                thread.join(10)
                assert not thread.is_alive()
    records = consumer_records(caplog)
    assert [r.levelno for r in records] == [logging.WARNING, logging.ERROR], caplog.text
    assert_names_the_job(records[0], job_id, "1/2")
    assert "status=retry " in records[0].getMessage()
    assert "error=handler timed out after 0.2s; its thread is abandoned and replaced" in (
        records[0].getMessage()
    )
    assert_names_the_job(records[1], job_id, "2/2")
    assert "status=failed " in records[1].getMessage()
    assert "error=attempts used up (2/2): handler timed out after 0.2s" in records[1].getMessage()
    assert "late result" not in caplog.text


def test_with_logging_middleware_the_error_is_logged_once(
    memory: MemoryBroker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    job_id, records = run(
        memory, caplog, "raise", max_attempts=1, middleware=(LoggingMiddleware(),)
    )
    (record,) = records
    assert record.levelno == logging.ERROR
    assert_names_the_job(record, job_id, "1/1")
    with_error = [r for r in caplog.records if "mail server unreachable" in r.getMessage()]
    assert with_error == [record]  # the middleware's line has the time, not the error
    assert sum(r.exc_info is not None for r in caplog.records) == 1
    jobs_lines = [r.getMessage() for r in caplog.records if r.name == "taskmaster.jobs"]
    assert jobs_lines[-1].startswith(f"status=failure queue=emails job={job_id} attempt=1 time=")


def test_error_reporter_reject_logs_the_traceback_and_the_consumer_only_the_reject(
    memory: MemoryBroker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    job_id, records = run(
        memory, caplog, "raise", middleware=(ErrorReporter(reject=True),), max_attempts=3
    )
    (record,) = records
    assert record.levelno == logging.INFO
    assert record.getMessage() == (
        f"status=rejected queue=emails job={job_id} attempt=1/3 "
        "error=ConnectionError: mail server unreachable"
    )
    (reported,) = [r for r in caplog.records if r.name == "taskmaster.errors"]
    assert reported.levelno == logging.ERROR and reported.exc_info is not None


def test_json_logs_carry_the_attempts_and_the_traceback(
    memory: MemoryBroker, caplog: pytest.LogCaptureFixture
) -> None:
    job_id, (record, *_) = run(memory, caplog, "raise")
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "taskmaster.consumer"
    assert (entry["queue"], entry["job_id"], entry["attempt"], entry["max_attempts"]) == (
        "emails",
        job_id,
        1,
        3,
    )
    assert entry["outcome"] == "retry"
    assert entry["exception"].endswith("ConnectionError: mail server unreachable")
