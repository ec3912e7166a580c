"""The broker contract suite, shipped: a broker proves itself by running it.

Needs pytest and hypothesis (``pip install 'taskmaster-jobs[test]'``);
importing ``taskmaster_core`` alone never imports them. See docs/plugins.md,
"Writing a broker"::

    from taskmaster_core.testing import BrokerContract, Harness

    class TestMyBroker(BrokerContract):
        @pytest.fixture
        def make_harness(self): ...  # a factory (**broker_options) -> Harness
"""

import pytest

# The suite's modules are not test files: ask pytest to rewrite their asserts,
# so a failing contract test shows both sides as any test would.
pytest.register_assert_rewrite(
    "taskmaster_core.testing._base",
    "taskmaster_core.testing._builders",
    "taskmaster_core.testing._contract_consumer",
    "taskmaster_core.testing._contract_model",
    "taskmaster_core.testing._contract_operations",
    "taskmaster_core.testing._contract_put",
    "taskmaster_core.testing._contract_settle",
)

from ._base import ContractBase  # noqa: E402
from ._builders import ack, fail, info, new_job, put_one, retry  # noqa: E402
from ._contract_async import AsyncConsumerContract  # noqa: E402
from ._contract_consumer import ConsumerContract  # noqa: E402
from ._contract_model import BrokerMachine, ModelContract  # noqa: E402
from ._contract_operations import OperationsContract  # noqa: E402
from ._contract_pause import PauseContract  # noqa: E402
from ._contract_put import PutClaimContract  # noqa: E402
from ._contract_settle import SettleContract  # noqa: E402
from ._harness import FakeClock, Harness, HarnessFactory  # noqa: E402
from ._suite import BrokerContract  # noqa: E402

__all__ = [
    "AsyncConsumerContract",
    "BrokerContract",
    "BrokerMachine",
    "ConsumerContract",
    "ContractBase",
    "FakeClock",
    "Harness",
    "HarnessFactory",
    "ModelContract",
    "OperationsContract",
    "PauseContract",
    "PutClaimContract",
    "SettleContract",
    "ack",
    "fail",
    "info",
    "new_job",
    "put_one",
    "retry",
]
