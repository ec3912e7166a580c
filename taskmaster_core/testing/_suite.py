"""The whole contract in one class to subclass."""

from __future__ import annotations

from ._contract_async import AsyncConsumerContract
from ._contract_consumer import ConsumerContract
from ._contract_model import ModelContract
from ._contract_operations import OperationsContract
from ._contract_pause import PauseContract
from ._contract_put import PutClaimContract
from ._contract_settle import SettleContract

__all__ = ["BrokerContract"]


class BrokerContract(
    PutClaimContract,
    SettleContract,
    OperationsContract,
    ConsumerContract,
    AsyncConsumerContract,
    PauseContract,
    ModelContract,
):
    """Every contract test: the broker's operations (putting, claiming,
    settling, leases and fencing, dedup keys, requeue/delete/prune, stats,
    wake-ups, closing, pausing), the consumer loop on the broker (sync and
    async handlers), and the hypothesis
    model test. Subclass it as ``Test...`` and define ``make_harness``
    (see :class:`~taskmaster_core.testing._base.ContractBase`)."""
