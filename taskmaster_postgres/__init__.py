"""Taskmaster's PostgreSQL broker: LISTEN/NOTIFY wake-ups, SKIP LOCKED claims."""

from ._broker import PostgresBroker
from ._names import MAX_QUEUE_NAME_LENGTH
from ._schema import LATEST_VERSION as SCHEMA_VERSION

__all__ = ["MAX_QUEUE_NAME_LENGTH", "SCHEMA_VERSION", "PostgresBroker"]
