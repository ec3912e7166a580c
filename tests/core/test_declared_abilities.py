"""Optional broker abilities are declared (a protocol, or a Capability), and
the core knows no backend by name."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import taskmaster_core
from taskmaster_core import (
    BrokerBase,
    Capability,
    PlansMigrations,
    capabilities_of,
)
from taskmaster_memory import MemoryBroker


def test_the_memory_broker_declares_wake_ups_and_pause_only() -> None:
    broker = MemoryBroker()
    assert capabilities_of(broker) == {Capability.WAKE_UPS, Capability.PAUSE}
    assert not isinstance(broker, PlansMigrations)  # no stub to satisfy a sniffer


def test_a_broker_declaring_nothing_has_no_capabilities() -> None:
    class Bare(BrokerBase):
        pass

    assert capabilities_of(Bare()) == frozenset()  # type: ignore[arg-type]

    class Planner(BrokerBase):
        capabilities = frozenset({Capability.TRANSACTIONAL_PUT})

        def migration_sql(self) -> list[str]:
            return []

    planner: Any = Planner()
    assert capabilities_of(planner) == {Capability.TRANSACTIONAL_PUT}
    assert isinstance(planner, PlansMigrations)


def test_a_broker_outside_brokerbase_may_declare_nothing() -> None:
    class Plain:  # a third-party broker that never heard of capabilities
        def migrate(self) -> None:
            pass

    assert capabilities_of(Plain()) == frozenset()  # type: ignore[arg-type]


def test_the_core_never_names_the_postgres_driver() -> None:
    root = Path(taskmaster_core.__file__).parent
    found = [
        f"{path.relative_to(root)}:{number}"
        for path in sorted(root.rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search("psycopg", line, re.IGNORECASE)
    ]
    assert found == []
