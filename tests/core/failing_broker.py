"""A broker URL plugin for tests: ``failing://<error>`` opens a memory broker
whose every read raises the named core error, with a message that holds none
of the words a text match would look for. The CLI must act on the type."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from taskmaster_core import (
    Broker,
    BrokerConfigurationError,
    BrokerError,
    BrokerUnavailableError,
    PermissionDeniedError,
    QueueStats,
    SchemaMissingError,
    hookimpl,
)
from taskmaster_memory import MemoryBroker

ERRORS: dict[str, type[BrokerError]] = {
    "schema": SchemaMissingError,
    "permission": PermissionDeniedError,
    "unavailable": BrokerUnavailableError,
    "plain": BrokerError,
    "settings": BrokerConfigurationError,
}
WHERE, REASON = "fake-host/db", "the storage said no"


class FailingBroker(MemoryBroker):
    def __init__(self, error: type[BrokerError], *, on_open: bool) -> None:
        super().__init__()
        self.error = error
        self.on_open = on_open

    def _fail(self, action: str) -> BrokerError:
        return self.error(f"{action} failed on {WHERE}: {REASON}", where=WHERE, reason=REASON)

    def open(self) -> None:
        if self.on_open:
            raise self.error(f"cannot open {WHERE}: {REASON}", where=WHERE, reason=REASON)
        super().open()

    def stats(self, queues: Collection[str] | None = None) -> list[QueueStats]:
        raise self._fail("stats")


@hookimpl
def taskmaster_broker_from_url(url: str, options: dict[str, Any]) -> Broker | None:
    if not url.startswith("failing://"):
        return None
    name = url.removeprefix("failing://")
    on_open = name.endswith("-on-open")
    return FailingBroker(ERRORS[name.removesuffix("-on-open")], on_open=on_open)
