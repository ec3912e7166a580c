"""Registers the ``memory://`` URL scheme (entry point ``taskmaster``: memory)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from taskmaster_core import Broker, ConfigurationError, hookimpl


@hookimpl
def taskmaster_broker_from_url(url: str, options: dict[str, Any]) -> Broker | None:
    parts = urlsplit(url)
    if parts.scheme != "memory":
        return None
    if parts.netloc or parts.path.strip("/") or parts.query:
        raise ConfigurationError(f"memory:// URLs take no host, path or query, got {url!r}")
    from ._broker import MemoryBroker

    return MemoryBroker(**options)
