"""A pytest plugin for applications that use Taskmaster (entry point ``pytest11``).

Fixtures:

- ``taskmaster_broker`` — an open, migrated, empty broker. The memory broker
  by default; set ``--taskmaster-url``, the ``TASKMASTER_TEST_URL``
  environment variable or the ``taskmaster_url`` ini option to run the same
  tests on Postgres (jobs are deleted before and after each test, so point
  it at a test database).
- ``taskmaster_publisher`` — a ``Publisher`` on that broker.

To run what a test queued, synchronously: ``Consumer(broker, queue,
handler).drain(raise_errors=True)``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from ._broker import Broker
from ._plugins import open_broker
from ._publisher import Publisher

__all__ = ["taskmaster_broker", "taskmaster_publisher"]

_ENV = "TASKMASTER_TEST_URL"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("taskmaster")
    group.addoption(
        "--taskmaster-url",
        default=None,
        help=f"broker URL for the taskmaster_broker fixture (default: ${_ENV}, "
        "the taskmaster_url ini option, or memory://)",
    )
    parser.addini("taskmaster_url", "broker URL for the taskmaster_broker fixture", default="")


def _url(config: pytest.Config) -> str:
    option = config.getoption("--taskmaster-url")
    ini = config.getini("taskmaster_url")
    return str(option or os.environ.get(_ENV) or ini or "memory://")


@pytest.fixture
def taskmaster_broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    """An open, migrated broker with no jobs (see the module docstring)."""
    broker = open_broker(_url(request.config))
    broker.open()
    try:
        broker.migrate()
        broker.delete()
        yield broker
        broker.delete()
    finally:
        broker.close()


@pytest.fixture
def taskmaster_publisher(taskmaster_broker: Broker) -> Publisher:
    """A Publisher on ``taskmaster_broker``."""
    return Publisher(taskmaster_broker)
