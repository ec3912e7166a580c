"""The shipped contract suite (taskmaster_core.testing) on both built-in brokers.

Each class runs every contract test; the fixtures that build the brokers are
in tests/conftest.py (memory) and tests/pg_fixtures.py (Postgres).
"""

from __future__ import annotations

import pytest

from taskmaster_core.testing import BrokerContract, HarnessFactory


class TestMemoryBroker(BrokerContract):
    model_examples = 150  # fast: more examples for the model test

    @pytest.fixture
    def make_harness(self, make_memory_harness: HarnessFactory) -> HarnessFactory:
        return make_memory_harness


@pytest.mark.postgres
class TestPostgresBroker(BrokerContract):
    @pytest.fixture
    def make_harness(self, make_pg_harness: HarnessFactory) -> HarnessFactory:
        return make_pg_harness
