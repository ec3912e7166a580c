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


USER_ASYNC_TESTS = """
import pytest
from taskmaster_core import ACK, Consumer

@pytest.fixture
def anyio_backend():
    return "asyncio"

@pytest.mark.anyio
async def test_an_async_consumer_runs_on_the_tests_loop(
    taskmaster_start_consumer, taskmaster_async_publisher
):
    seen = []

    async def handler(job):
        seen.append(job.payload)
        return ACK

    consumer = await taskmaster_start_consumer("emails", handler, concurrency=5)
    await taskmaster_async_publisher.put_many("emails", [1, 2, 3])
    assert await consumer.wait_idle_async(30)
    assert sorted(seen) == [1, 2, 3]

@pytest.mark.anyio
async def test_drain_async_runs_queued_jobs_in_the_test(
    taskmaster_broker, taskmaster_async_publisher
):
    await taskmaster_async_publisher.put("emails", {"to": "ada@example.com"})
    sent = []

    async def handler(job):
        sent.append(job.payload)
        return ACK

    consumer = Consumer(taskmaster_broker, "emails", handler)
    assert await consumer.drain_async(raise_errors=True) == 1
    assert sent == [{"to": "ada@example.com"}]

@pytest.mark.anyio
async def test_consumers_are_stopped_after_the_test(taskmaster_start_consumer):
    async def handler(job):
        return ACK

    pytest.started = await taskmaster_start_consumer("other", handler)

def test_the_consumer_of_the_previous_test_was_stopped():
    assert pytest.started.wait_stopped(0)

def test_broker_kind(taskmaster_broker):
    print("BROKER", type(taskmaster_broker).__name__)
"""


def test_the_pytest_plugin_has_async_fixtures_for_anyio_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(USER_ASYNC_TESTS)
    result = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(["*BROKER MemoryBroker*"])


@pytest.mark.postgres
def test_the_async_fixtures_work_on_postgres_too(pytester: pytest.Pytester, pg_dsn: str) -> None:
    pytester.makepyfile(USER_ASYNC_TESTS)
    pytester.makeini(f"[pytest]\ntaskmaster_url = {as_url(pg_dsn)}\n")
    result = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(["*BROKER PostgresBroker*"])


def test_the_async_consumer_fixture_says_what_it_needs(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        async def test_without_anyio(taskmaster_start_consumer):
            pass

        @pytest.fixture
        def anyio_backend():
            return "trio"

        @pytest.mark.anyio
        async def test_on_trio(taskmaster_start_consumer):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [
            "*taskmaster_start_consumer is an async fixture run by anyio's pytest plugin*",
            "*taskmaster_start_consumer needs the asyncio backend, not 'trio'*",
        ],
        consecutive=False,
    )
