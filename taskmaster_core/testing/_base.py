"""The fixtures every contract class shares; a subclass supplies ``make_harness``."""

from __future__ import annotations

import pytest

from taskmaster_core import Broker, Capability, capabilities_of

from ._harness import Harness, HarnessFactory

__all__ = ["LEASE", "ContractBase", "needs"]

LEASE = 30.0
"""The lease, in seconds, of claims that are not about leases."""


class ContractBase:
    """Subclass a contract class in a ``test_*.py`` module, name the subclass
    ``Test...``, and define a ``make_harness`` fixture returning a
    :data:`HarnessFactory`; the ``harness`` and ``broker`` fixtures follow
    from it. Options the suite passes to the factory: ``keep_done=True``
    (acked jobs are kept as ``done``). A factory whose broker cannot honour
    an option should ``pytest.skip`` with the reason. Tests of an optional
    ability (``Capability.WAKE_UPS``) skip for a broker that does not
    declare it."""

    @pytest.fixture
    def make_harness(self) -> HarnessFactory:
        """Overridden by the subclass: ``(**broker_options) -> Harness``, each
        call a new open, migrated, empty broker, closed after the test."""
        pytest.fail(
            f"{type(self).__name__} must define a make_harness fixture that returns"
            " a factory (**broker_options) -> Harness (docs/plugins.md, 'Writing a broker')",
            pytrace=False,
        )

    @pytest.fixture
    def harness(self, make_harness: HarnessFactory) -> Harness:
        """A harness with default options."""
        return make_harness()

    @pytest.fixture
    def broker(self, harness: Harness) -> Broker:
        """The harness's broker."""
        return harness.broker


def needs(broker: Broker, capability: Capability) -> None:
    """Skip the test unless ``broker`` declares ``capability``."""
    if capability not in capabilities_of(broker):
        pytest.skip(f"{type(broker).__name__} does not declare Capability.{capability.name}")
