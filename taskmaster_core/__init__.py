"""Taskmaster core: jobs, brokers, serializers, middleware, publisher and consumer."""

from ._broker import Broker, BrokerBase, Subscription, WakeCallback
from ._errors import (
    BrokerClosedError,
    BrokerError,
    ConfigurationError,
    PayloadTooLargeError,
    PayloadValidationError,
    SerializationError,
    TaskmasterError,
    UnknownSerializerError,
)
from ._hookspecs import hookimpl
from ._plugins import SerializerRegistry, get_plugin_manager, new_plugin_manager, open_broker
from ._serializers import JsonSerializer, MsgpackSerializer, Serializer
from ._types import ClaimedJob, JobInfo, JobState, Lease, NewJob, QueueStats, Settlement

__all__ = [
    "Broker",
    "BrokerBase",
    "BrokerClosedError",
    "BrokerError",
    "ClaimedJob",
    "ConfigurationError",
    "JobInfo",
    "JobState",
    "JsonSerializer",
    "Lease",
    "MsgpackSerializer",
    "NewJob",
    "PayloadTooLargeError",
    "PayloadValidationError",
    "QueueStats",
    "SerializationError",
    "Serializer",
    "SerializerRegistry",
    "Settlement",
    "Subscription",
    "TaskmasterError",
    "UnknownSerializerError",
    "WakeCallback",
    "get_plugin_manager",
    "hookimpl",
    "new_plugin_manager",
    "open_broker",
]
