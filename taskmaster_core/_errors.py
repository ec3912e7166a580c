"""Exceptions raised by Taskmaster.

Every error Taskmaster raises derives from one root::

    TaskmasterError
    ├── ConfigurationError        a bad argument, URL or setting
    │   └── UnknownSerializerError    no serializer is registered under that name
    ├── SerializationError        a payload could not be encoded or decoded
    │   └── PayloadValidationError    the payload does not match its declared type
    ├── PayloadTooLargeError      the encoded payload is over the configured limit
    └── BrokerError               the backend failed (driver errors are chained)
        └── BrokerClosedError         the broker is not open

Driver exceptions (psycopg and others) are translated at the broker boundary
with ``raise ... from``, so callers only need to catch ``TaskmasterError``.
"""

from __future__ import annotations


class TaskmasterError(Exception):
    """Root of every exception raised by Taskmaster."""


class ConfigurationError(TaskmasterError, ValueError):
    """A bad argument, URL or setting."""


class UnknownSerializerError(ConfigurationError, LookupError):
    """No serializer is registered under the requested name."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        super().__init__(
            f"unknown serializer {name!r}; registered serializers: {', '.join(known) or 'none'}"
        )


class SerializationError(TaskmasterError):
    """A payload could not be encoded or decoded."""


class PayloadValidationError(SerializationError, ValueError):
    """A payload does not match the type declared for its queue."""


class PayloadTooLargeError(TaskmasterError, ValueError):
    """An encoded payload is larger than the configured limit."""

    def __init__(self, queue: str, size: int, limit: int) -> None:
        self.queue = queue
        self.size = size
        self.limit = limit
        super().__init__(
            f"payload for queue {queue!r} is {size} bytes, over the limit of {limit} bytes"
        )


class BrokerError(TaskmasterError):
    """The backend failed; the driver's exception is chained as ``__cause__``."""


class BrokerClosedError(BrokerError):
    """The broker was used before ``open()`` or after ``close()``."""
