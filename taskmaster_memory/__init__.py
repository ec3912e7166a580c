"""In-memory broker: the full broker contract, thread-safe, no I/O."""

from ._broker import MemoryBroker

__all__ = ["MemoryBroker"]
