"""Taskmaster core: jobs, brokers, serializers, middleware, publisher and consumer."""

from ._async_publisher import AsyncPublisher
from ._broker import (
    AsyncTransactionalPut,
    Broker,
    BrokerBase,
    Capability,
    PlansMigrations,
    Subscription,
    WakeCallback,
    capabilities_of,
)
from ._consumer import Consumer, Handler
from ._errors import (
    BrokerClosedError,
    BrokerConfigurationError,
    BrokerError,
    BrokerUnavailableError,
    ConfigurationError,
    PayloadTooLargeError,
    PayloadValidationError,
    PermissionDeniedError,
    SchemaMissingError,
    SerializationError,
    TaskmasterError,
    UnknownSerializerError,
)
from ._hookspecs import hookimpl
from ._job import Job
from ._middleware import (
    AsyncProcessFn,
    ErrorReporter,
    LoggingMiddleware,
    Message,
    Middleware,
    ProcessFn,
    PublishFn,
)
from ._names import (
    MAX_DEDUP_KEY_BYTES,
    MAX_QUEUE_NAME_BYTES,
    MAX_QUEUE_NAME_LENGTH,
    check_dedup_key,
    check_new_jobs,
    check_queue_name,
)
from ._outcomes import ACK, REJECT, Ack, Outcome, Reject, Retry
from ._plugins import (
    SerializerRegistry,
    enable_plugins,
    get_plugin_manager,
    new_plugin_manager,
    open_broker,
)
from ._publisher import Publisher, QueueOptions
from ._retry import RetryPolicy
from ._serializers import JsonSerializer, MsgpackSerializer, Serializer
from ._types import ClaimedJob, JobInfo, JobState, Lease, NewJob, QueueStats, Settlement

__all__ = [
    "ACK",
    "MAX_DEDUP_KEY_BYTES",
    "MAX_QUEUE_NAME_BYTES",
    "MAX_QUEUE_NAME_LENGTH",
    "REJECT",
    "Ack",
    "AsyncProcessFn",
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
    "PayloadTooLargeError",
    "PayloadValidationError",
    "PermissionDeniedError",
    "PlansMigrations",
    "ProcessFn",
    "PublishFn",
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
    "enable_plugins",
    "get_plugin_manager",
    "hookimpl",
    "new_plugin_manager",
    "open_broker",
]
