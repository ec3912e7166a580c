"""The public surface: exactly the names we mean to export."""

from __future__ import annotations

from types import ModuleType

import taskmaster_core
import taskmaster_memory
import taskmaster_postgres
from taskmaster_core import RetryPolicy

CORE = {
    "ACK",
    "MAX_DEDUP_KEY_BYTES",
    "MAX_QUEUE_NAME_BYTES",
    "MAX_QUEUE_NAME_LENGTH",
    "REJECT",
    "Ack",
    "AsyncPublisher",
    "AsyncTransactionalPut",
    "Broker",
    "BrokerBase",
    "BrokerClosedError",
    "BrokerConfigurationError",
    "BrokerError",
    "BrokerUnavailableError",
    "Capability",
    "ClaimedJob",
    "ConfigurationError",
    "Consumer",
    "ErrorReporter",
    "Handler",
    "Job",
    "JobInfo",
    "JobState",
    "JsonSerializer",
    "Lease",
    "LoggingMiddleware",
    "Message",
    "Middleware",
    "MsgpackSerializer",
    "NewJob",
    "Outcome",
    "ProcessFn",
    "AsyncProcessFn",
    "PublishFn",
    "PayloadTooLargeError",
    "PayloadValidationError",
    "PermissionDeniedError",
    "PausesQueues",
    "PlansMigrations",
    "Publisher",
    "QueueOptions",
    "QueueStats",
    "Reject",
    "Retry",
    "RetryPolicy",
    "SchemaMissingError",
    "SerializationError",
    "Serializer",
    "SerializerRegistry",
    "Settlement",
    "Subscription",
    "TaskmasterError",
    "UnknownSerializerError",
    "WakeCallback",
    "capabilities_of",
    "check_dedup_key",
    "check_new_jobs",
    "check_queue_name",
    "check_queue_names",
    "enable_plugins",
    "get_plugin_manager",
    "hookimpl",
    "new_plugin_manager",
    "open_broker",
}


def test_core_exports_exactly_the_public_names() -> None:
    assert set(taskmaster_core.__all__) == CORE
    for name in CORE:
        assert hasattr(taskmaster_core, name), name
    public = {
        n
        for n in dir(taskmaster_core)
        if not n.startswith("_") and not isinstance(getattr(taskmaster_core, n), ModuleType)
    }
    assert public - CORE == set(), "names leak from taskmaster_core without being in __all__"


def test_backend_packages_export_their_broker() -> None:
    assert taskmaster_memory.__all__ == ["MemoryBroker"]
    assert "PostgresBroker" in taskmaster_postgres.__all__


def test_every_error_derives_from_the_root() -> None:
    errors = [
        getattr(taskmaster_core, n)
        for n in CORE
        if n.endswith("Error") and isinstance(getattr(taskmaster_core, n), type)
    ]
    assert len(errors) == 12
    assert all(issubclass(e, taskmaster_core.TaskmasterError) for e in errors)


def test_retry_policy_backs_off_exponentially_within_bounds() -> None:
    policy = RetryPolicy(base_delay=1, factor=2, max_delay=10, jitter=0)
    assert [policy.delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    jittery = RetryPolicy(base_delay=10, jitter=0.5)
    delays = {jittery.delay(1) for _ in range(50)}
    assert all(5 <= d <= 15 for d in delays)
    assert len(delays) > 1
    assert RetryPolicy(jitter=0).delay(10_000) == 3600  # no overflow on huge attempts
