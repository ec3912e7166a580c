"""A consumer's settings: one frozen dataclass, checked when it is made.

``Consumer.replace()`` is ``dataclasses.replace`` on it, so a setting is
written in two places only: the constructor's signature and here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Generic, Self, TypeVar, overload

import pluggy

from ._broker import Broker
from ._errors import ConfigurationError
from ._job import Job
from ._names import check_queue_name
from ._retry import RetryPolicy

__all__ = ["ConsumerSettings", "Setting"]

T = TypeVar("T")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ConsumerSettings:
    """Everything a consumer was built with (see ``Consumer``)."""

    broker: Broker
    queues: tuple[str, ...]
    handler: Callable[[Job], Any]
    concurrency: int
    middleware: Sequence[object]
    context: Any
    payload_type: Any
    retry: RetryPolicy
    lease: float
    poll_interval: float
    prefetch: int | None
    flush_interval: float
    job_timeout: float | None
    plugins: bool | pluggy.PluginManager
    name: str
    """``None`` given: ``consumer[<queues>]``."""

    def __post_init__(self) -> None:
        queues: Any = self.queues
        names = [queues] if isinstance(queues, str) else list(queues)
        if not names or not all(isinstance(q, str) and q for q in names):
            raise ConfigurationError(f"queues must be non-empty strings, got {queues!r}")
        for queue in names:  # a name no job can carry would wait forever
            check_queue_name(queue)
        if not callable(self.handler):
            raise ConfigurationError(f"handler must be callable, got {self.handler!r}")
        concurrency = self.concurrency
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigurationError(f"concurrency must be an int >= 1, got {concurrency!r}")
        if self.lease <= 0:
            raise ConfigurationError(f"lease must be > 0 seconds, got {self.lease!r}")
        if self.poll_interval <= 0:
            raise ConfigurationError(
                f"poll_interval must be > 0 seconds, got {self.poll_interval!r}"
            )
        if self.prefetch is not None and self.prefetch < 0:
            raise ConfigurationError(f"prefetch must be >= 0, got {self.prefetch!r}")
        if self.flush_interval < 0:
            raise ConfigurationError(f"flush_interval must be >= 0, got {self.flush_interval!r}")
        if self.job_timeout is not None and self.job_timeout <= 0:
            raise ConfigurationError(f"job_timeout must be > 0 seconds, got {self.job_timeout!r}")
        unique = tuple(dict.fromkeys(names))
        normal = {
            "queues": unique,
            "retry": RetryPolicy() if self.retry is None else self.retry,
            "lease": float(self.lease),
            "poll_interval": float(self.poll_interval),
            "flush_interval": float(self.flush_interval),
            "name": self.name or f"consumer[{','.join(unique)}]",
        }
        for field, value in normal.items():
            object.__setattr__(self, field, value)


class Setting(Generic[T]):
    """A read-only attribute of ``Consumer`` that reads its ``_settings``."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._field = name

    @overload
    def __get__(self, consumer: None, owner: type | None = None) -> Self: ...
    @overload
    def __get__(self, consumer: Any, owner: type | None = None) -> T: ...
    def __get__(self, consumer: Any | None, owner: type | None = None) -> T | Self:
        if consumer is None:
            return self
        value: T = getattr(consumer._settings, self._field)
        return value

    def __set__(self, consumer: Any, value: T) -> None:
        raise AttributeError(
            f"{self._field} is read-only; use replace({self._field}=...) for a consumer "
            "with another value"
        )
