"""Exceptions raised by Taskmaster.

Every error Taskmaster raises derives from one root::

    TaskmasterError
    ├── ConfigurationError        a bad argument, URL or setting
    │   └── UnknownSerializerError    no serializer is registered under that name
    ├── SerializationError        a payload could not be encoded or decoded
    │   └── PayloadValidationError    the payload does not match its declared type
    ├── PayloadTooLargeError      the encoded payload is over the configured limit
    └── BrokerError               the backend failed (driver errors are chained)
        ├── BrokerClosedError         the broker is not open
        ├── BrokerUnavailableError    cannot reach the backend, or lost it: retrying may help
        ├── SchemaMissingError        the storage is not migrated (or older than this code)
        ├── PermissionDeniedError     the backend's role lacks a privilege (grants)
        └── BrokerConfigurationError  the backend refuses the broker's settings for good
                                      (also a ConfigurationError)

Each broker translates its driver's exceptions at its boundary, in one
mapping, with ``raise ... from``: callers only need to catch
``TaskmasterError``, and act on the type, never on the message text. A
driver error that fits none of the subclasses (a statement timeout, a
deadlock, a bug) is a plain ``BrokerError``.
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
    """The backend failed; the driver's exception is chained as ``__cause__``.

    ``where`` (e.g. ``user@host:port/db``, never a password) and ``reason``
    (the backend's own words), when the broker gives them, let a caller say
    the failure in its own terms without parsing the message."""

    def __init__(self, message: str, *, where: str | None = None, reason: str | None = None):
        super().__init__(message)
        self.where = where
        self.reason = reason


class BrokerClosedError(BrokerError):
    """The broker was used before ``open()`` or after ``close()``."""


class BrokerUnavailableError(BrokerError):
    """The backend cannot be reached, the connection to it was lost, it is
    starting up or shutting down, or no connection came within the timeout.
    Transient: the same call may succeed later."""


class SchemaMissingError(BrokerError):
    """The broker's storage does not exist, or is at an older schema version
    than this code needs: run ``migrate()`` (``taskmaster migrate``)."""


class PermissionDeniedError(BrokerError):
    """The backend refused an operation for lack of a privilege (e.g. a
    database role without the grants the broker needs)."""


class BrokerConfigurationError(BrokerError, ConfigurationError):
    """The backend refuses the broker's settings, and will on every attempt:
    no such database or user, wrong password, a refused login. A
    ``BrokerError`` (the broker failed to operate) and a ``ConfigurationError``
    (the fix is in the settings, not in waiting)."""
