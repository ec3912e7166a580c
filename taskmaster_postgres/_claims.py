"""The workers' hot path: claim (with its sweep of expired leases), settle,
extend and release, each one round trip on a pooled connection."""

from __future__ import annotations

import time
from collections.abc import Sequence

from taskmaster_core import ClaimedJob, ConfigurationError, Lease, Settlement

from ._connections import Connections
from ._put import text
from ._rows import claimed_job_row
from ._sql import RECLAIM_BATCH, Statements

__all__ = ["Claims"]

_SETTLE_KINDS = frozenset({"ack", "fail", "retry"})


class Claims:
    """Claims and their outcomes for one broker. ``reclaim_interval``: a
    claim also sweeps expired leases of its queues at most this often."""

    def __init__(
        self, sql: Statements, connections: Connections, *, reclaim_interval: float
    ) -> None:
        self._sql = sql
        self._connections = connections
        self.reclaim_interval = reclaim_interval
        self.next_reclaim: dict[tuple[str, ...], float] = {}
        """When each set of queues (as claimed together) is next swept: per
        set, because a sweep covers only the queues of the claim that makes it."""

    def claim(self, queues: Sequence[str], limit: int, lease: float) -> list[ClaimedJob]:
        if limit <= 0 or not queues:
            self._connections.require_open("claim")
            return []
        queue_list = list(dict.fromkeys(queues))  # the claim statement needs them distinct
        params = {"queues": queue_list, "limit": limit, "lease": float(lease)}
        now = time.monotonic()
        sweep_key = tuple(queue_list)
        reclaim = now >= self.next_reclaim.get(sweep_key, 0.0)
        if reclaim:
            self.next_reclaim[sweep_key] = now + self.reclaim_interval
        with self._connections.connection("claim") as conn:
            # One round trip: [reclaim expired leases, then] claim. The claim
            # statement's snapshot is taken after the reclaim ran, so jobs put
            # back to 'queued' are claimable by this very call.
            if reclaim:
                with conn.pipeline():
                    swept = conn.execute(self._sql.reclaim, {"queues": queue_list})
                    cur = conn.cursor(row_factory=claimed_job_row).execute(self._sql.claim, params)
            else:
                swept = None
                cur = conn.cursor(row_factory=claimed_job_row).execute(self._sql.claim, params)
            if swept is not None:
                found = swept.fetchone()
                if found is not None and found[0] >= RECLAIM_BATCH:
                    # more may be waiting: sweep again on the next claim
                    self.next_reclaim.pop(sweep_key, None)
            return cur.fetchall()

    def settle(self, settlements: Sequence[Settlement]) -> list[int]:
        if not settlements:
            self._connections.require_open("settle")
            return []
        for s in settlements:
            if s.kind not in _SETTLE_KINDS:
                raise ConfigurationError(f"unknown settlement kind {s.kind!r}")
        params = {
            "ids": [s.id for s in settlements],
            "tokens": [s.token for s in settlements],
            "kinds": [s.kind for s in settlements],
            "errors": [text(s.error) for s in settlements],
            "delays": [float(s.delay) for s in settlements],
        }
        with self._connections.connection("settle") as conn:
            # Planned per call: a cached generic plan does not know the batch size
            # and may join the batch by a nested loop (quadratic in it).
            row = conn.execute(self._sql.settle, params, prepare=False).fetchone()
        return list(row[0]) if row is not None else []

    def extend(self, leases: Sequence[Lease], lease: float) -> list[int]:
        if not leases:
            self._connections.require_open("extend")
            return []
        params = {
            "ids": [x.id for x in leases],
            "tokens": [x.token for x in leases],
            "lease": float(lease),
        }
        with self._connections.connection("extend") as conn:
            row = conn.execute(self._sql.extend, params, prepare=False).fetchone()
        return list(row[0]) if row is not None else []

    def release(self, leases: Sequence[Lease]) -> int:
        if not leases:
            self._connections.require_open("release")
            return 0
        params = {"ids": [x.id for x in leases], "tokens": [x.token for x in leases]}
        with self._connections.connection("release") as conn:
            row = conn.execute(self._sql.release, params, prepare=False).fetchone()
        return int(row[0]) if row is not None else 0
