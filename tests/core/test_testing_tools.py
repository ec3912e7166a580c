"""What we give users for their own tests: Consumer.drain and the pytest plugin."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

import pytest
from psycopg.conninfo import conninfo_to_dict

from taskmaster_core import (
    ACK,
    Consumer,
    Job,
    JobState,
    Publisher,
    Retry,
    SerializationError,
    TaskmasterError,
)
from taskmaster_memory import MemoryBroker


@pytest.fixture
def broker() -> Any:
    with MemoryBroker() as broker:
        yield broker


def test_drain_runs_ready_jobs_in_the_calling_thread(broker: MemoryBroker) -> None:
    publisher = Publisher(broker)
    publisher.put_many("q", range(5))
    publisher.put("q", 99, delay=60)  # not due: drain leaves it
    seen: list[int] = []
    consumer = Consumer(broker, "q", lambda job: seen.append(job.payload) or ACK)
    assert consumer.drain() == 5
    assert seen == [0, 1, 2, 3, 4]
    assert broker.stats()[0].scheduled == 1


def test_drain_reruns_immediate_retries_until_attempts_run_out(broker: MemoryBroker) -> None:
    Publisher(broker, max_attempts=3).put("q", 1)
    attempts: list[int] = []

    def handler(job: Job) -> Any:
        attempts.append(job.attempt)
        return Retry(delay=0)

    assert Consumer(broker, "q", handler).drain() == 3
    assert attempts == [1, 2, 3]
    assert broker.stats()[0].failed == 1


def test_drain_can_reraise_the_handler_error_after_recording_it(broker: MemoryBroker) -> None:
    Publisher(broker, max_attempts=1).put_many("q", ["boom", "fine"])

    def handler(job: Job) -> Any:
        if job.payload == "boom":
            raise LookupError("no such thing")
        return ACK

    consumer = Consumer(broker, "q", handler)
    with pytest.raises(LookupError, match="no such thing"):
        consumer.drain(raise_errors=True)
    (failed,) = broker.jobs(states=[JobState.FAILED])
    assert "LookupError: no such thing" in (failed.last_error or "")
    (waiting,) = broker.jobs(states=[JobState.QUEUED])  # returned, not lost
    assert waiting.attempts == 0
    assert consumer.drain() == 1


def test_drain_raises_for_bad_payloads_and_bad_return_values(broker: MemoryBroker) -> None:
    Publisher(broker).put("q", "not a number")
    with pytest.raises(SerializationError):
        Consumer(broker, "q", lambda job: ACK, payload_type=int).drain(raise_errors=True)
    Publisher(broker).put("r", 1)
    with pytest.raises(TaskmasterError, match="handler returned None"):
        Consumer(broker, "r", lambda job: None).drain(raise_errors=True)


def test_drain_refuses_a_running_consumer(broker: MemoryBroker) -> None:
    with (
        Consumer(broker, "q", lambda job: ACK) as consumer,
        pytest.raises(TaskmasterError, match="running"),
    ):
        consumer.drain()


def as_url(dsn: str) -> str:
    """A postgresql:// URL for a DSN that may be in keyword form."""
    if "://" in dsn:
        return dsn
    params = conninfo_to_dict(dsn)
    dbname = params.pop("dbname", "")
    return f"postgresql:///{quote(str(dbname))}?{urlencode(params)}"


USER_TESTS = """
from taskmaster_core import ACK, Consumer

def test_signup_sends_a_welcome_email(taskmaster_broker, taskmaster_publisher):
    taskmaster_publisher.put("emails", {"to": "ada@example.com"})
    sent = []
    consumer = Consumer(taskmaster_broker, "emails", lambda job: sent.append(job.payload) or ACK)
    assert consumer.drain(raise_errors=True) == 1
    assert sent == [{"to": "ada@example.com"}]

def test_each_test_starts_empty(taskmaster_broker):
    assert taskmaster_broker.stats() == []

def test_broker_kind(taskmaster_broker):
    print("BROKER", type(taskmaster_broker).__name__)
"""


def test_the_pytest_plugin_gives_users_a_memory_broker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(USER_TESTS)
    result = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*BROKER MemoryBroker*"])


@pytest.mark.postgres
def test_the_pytest_plugin_switches_to_postgres_with_one_setting(
    pytester: pytest.Pytester, pg_dsn: str
) -> None:
    pytester.makepyfile(USER_TESTS)
    pytester.makeini(f"[pytest]\ntaskmaster_url = {as_url(pg_dsn)}\n")
    result = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*BROKER PostgresBroker*"])
