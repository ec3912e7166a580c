from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from taskmaster_core import (
    ACK,
    AsyncPublisher,
    ConfigurationError,
    Consumer,
    JobState,
    Message,
    Middleware,
    PayloadTooLargeError,
    PayloadValidationError,
    Publisher,
    QueueOptions,
    SerializationError,
    UnknownSerializerError,
)
from taskmaster_memory import MemoryBroker


class Email(msgspec.Struct):
    to: str
    subject: str


@pytest.fixture
def broker() -> Any:
    with MemoryBroker() as broker:
        yield broker


class Awaited:
    """An ``AsyncPublisher`` called from sync test code: each call runs its
    coroutine to the end on a fresh event loop, so every test here checks
    both publishers (same options, validation, encoding, middleware)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._publisher = AsyncPublisher(*args, **kwargs)

    def put(self, *args: Any, **kwargs: Any) -> Any:
        return asyncio.run(self._publisher.put(*args, **kwargs))

    def put_many(self, *args: Any, **kwargs: Any) -> Any:
        return asyncio.run(self._publisher.put_many(*args, **kwargs))

    def publish(self, *args: Any, **kwargs: Any) -> Any:
        return asyncio.run(self._publisher.publish(*args, **kwargs))


@pytest.fixture(params=["Publisher", "AsyncPublisher"])
def make(request: pytest.FixtureRequest) -> Any:
    """Makes the publisher under test: sync, or async driven by :class:`Awaited`."""
    return Publisher if request.param == "Publisher" else Awaited


def test_put_applies_options_and_queue_defaults(broker: MemoryBroker, make: Any) -> None:
    publisher = make(
        broker,
        max_attempts=4,
        queues={"mail": QueueOptions(serializer="msgpack", max_attempts=9, priority=3)},
    )
    a = publisher.put("plain", {"x": 1}, headers={"k": "v"}, dedup_key="d")
    b = publisher.put("mail", {"x": 2})
    c = publisher.put("mail", {"x": 3}, priority=-1, max_attempts=1, serializer="json")
    jobs = {j.id: j for j in broker.jobs()}
    assert (jobs[a].serializer, jobs[a].max_attempts, jobs[a].priority) == ("json", 4, 0)  # type: ignore[index]
    assert (jobs[a].headers, jobs[a].dedup_key) == ({"k": "v"}, "d")  # type: ignore[index]
    assert (jobs[b].serializer, jobs[b].max_attempts, jobs[b].priority) == ("msgpack", 9, 3)  # type: ignore[index]
    assert (jobs[c].serializer, jobs[c].max_attempts, jobs[c].priority) == ("json", 1, -1)  # type: ignore[index]


def test_delay_and_run_at_schedule_the_job(broker: MemoryBroker, make: Any) -> None:
    publisher = make(broker)
    publisher.put("q", 1, delay=timedelta(minutes=5))
    publisher.put("q", 2, run_at=datetime.now(UTC) + timedelta(hours=1))
    (stats,) = broker.stats()
    assert (stats.ready, stats.scheduled) == (0, 2)


def test_typed_queue_refuses_a_bad_payload_at_put(broker: MemoryBroker, make: Any) -> None:
    publisher = make(broker, queues={"mail": QueueOptions(payload_type=Email)})
    assert publisher.put("mail", Email(to="a@b", subject="hi")) is not None
    assert publisher.put("mail", {"to": "a@b", "subject": "hi"}) is not None
    missing = r"queue 'mail'.*missing required field .subject."
    with pytest.raises(PayloadValidationError, match=missing):
        publisher.put("mail", {"to": "a@b"})
    with pytest.raises(PayloadValidationError):
        publisher.put_many("mail", [{"to": "a@b", "subject": "ok"}, {"to": 5, "subject": "x"}])
    assert broker.stats()[0].ready == 2  # nothing of the bad batch was stored


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"queue": ""}, "queue name must be a non-empty string"),
        ({"queue": "x" * 1001}, "over the limit of 1000"),
        ({"queue": "a\x00b"}, "NUL"),
        ({"priority": "high"}, "priority must be an int"),
        ({"priority": 2**40}, "32 bits"),
        ({"delay": -1}, "delay must be a finite number >= 0"),
        ({"delay": float("nan")}, "finite"),
        ({"max_attempts": 0}, "max_attempts must be an int >= 1"),
        ({"dedup_key": ""}, "dedup key must be a non-empty string"),
        ({"headers": {"k": 1}}, "headers must map strings to strings"),
        ({"run_at": datetime(2030, 1, 1)}, "timezone-aware"),  # naive on purpose
    ],
)
def test_bad_arguments_get_a_clear_error(
    broker: MemoryBroker, make: Any, kwargs: dict[str, Any], message: str
) -> None:
    args: dict[str, Any] = {"queue": "q", "payload": 1, **kwargs}
    with pytest.raises(ConfigurationError, match=message):
        make(broker).put(**args)
    assert broker.stats() == []


def test_unknown_serializers_are_refused_early(broker: MemoryBroker, make: Any) -> None:
    with pytest.raises(UnknownSerializerError, match="'yaml'"):
        make(broker, serializer="yaml")
    with pytest.raises(UnknownSerializerError):
        make(broker, queues={"q": QueueOptions(serializer="yaml")})
    with pytest.raises(UnknownSerializerError):
        make(broker).put("q", 1, serializer="yaml")


def test_unencodable_payload_is_refused(broker: MemoryBroker, make: Any) -> None:
    with pytest.raises(SerializationError, match="cannot carry payload"):  # a set
        make(broker).put("q", {1, 2, 3j})


def test_payload_size_limit(broker: MemoryBroker, make: Any) -> None:
    publisher = make(broker, max_payload_size=1000)
    with pytest.raises(PayloadTooLargeError, match=r"queue 'q' is \d+ bytes, over the limit"):
        publisher.put("q", "x" * 2000)
    big = "y" * 10_000_000
    job_id = make(broker).put("big", big)  # 10 MB fits the default limit
    assert job_id is not None
    (stored,) = broker.jobs(ids=[job_id])
    assert len(stored.payload) == 10_000_002


def test_put_many_is_one_broker_call_with_ids_in_order(broker: MemoryBroker, make: Any) -> None:
    calls: list[int] = []
    real_put = broker.put

    def counting_put(jobs: Any, **kwargs: Any) -> Any:
        calls.append(len(jobs))
        return real_put(jobs, **kwargs)

    broker.put = counting_put  # type: ignore[method-assign]
    ids = make(broker).put_many("q", [{"i": i} for i in range(100)])
    assert calls == [100]
    assert ids == sorted(ids)  # type: ignore[type-var]


def test_publish_middleware_can_change_or_drop_messages(broker: MemoryBroker, make: Any) -> None:
    class Stamp(Middleware):
        def publish(self, message: Message, call_next: Any) -> None:
            if message.payload == "drop":
                return
            message.headers["stamped"] = "yes"
            message.priority = 5
            call_next(message)

    publisher = make(broker, middleware=[Stamp()])
    ids = publisher.put_many("q", ["a", "drop", "b"])
    assert ids[1] is None
    assert ids[0] is not None and ids[2] is not None
    assert publisher.put("q", "drop") is None
    stored = broker.jobs(states=[JobState.QUEUED])
    assert [(j.priority, j.headers) for j in stored] == [(5, {"stamped": "yes"})] * 2


def test_publisher_and_consumer_refuse_a_queue_name_no_broker_can_store(
    broker: MemoryBroker, make: Any
) -> None:
    """The same rule as the brokers' (tests/contract), checked before encoding."""
    too_long = "q" * 2_400
    with pytest.raises(ConfigurationError, match="over the limit of 1000"):
        make(broker).put(too_long, {})
    with pytest.raises(ConfigurationError, match="dedup key is 513 bytes"):
        make(broker).put("q", {}, dedup_key="k" * 513)
    with pytest.raises(ConfigurationError, match="over the limit of 1000"):
        Consumer(broker, ["q", too_long], lambda job: ACK)
    assert broker.jobs() == []
