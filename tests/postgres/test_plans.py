"""The claim and reclaim statements use their indexes on a large table."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from taskmaster_core.testing import Harness

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _explain(
    conn: psycopg.Connection[Any], query: bytes, params: dict[str, Any], *, generic: bool
) -> list[dict[str, Any]]:
    with conn.transaction(force_rollback=True):
        mode = "force_generic_plan" if generic else "force_custom_plan"
        conn.execute("SELECT set_config('plan_cache_mode', %s, true)", [mode])
        row = conn.execute(b"EXPLAIN (FORMAT JSON) " + query, params).fetchone()
    assert row is not None
    document = row[0] if not isinstance(row[0], str) else json.loads(row[0])
    return list(_nodes(document[0]["Plan"]))


@pytest.fixture(scope="module")
def big(make_pg_harness_module: Callable[..., Harness]) -> Harness:
    """1M queued jobs on 10 queues, 100k failed and 10k running ones."""
    harness = make_pg_harness_module()
    broker: Any = harness.broker
    table = broker.names.qualified
    with psycopg.connect(broker._dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (queue, payload, serializer, priority, run_at)"
                " SELECT 'q' || (i % 10), '\\x7b7d', 'json', i % 3,"
                "        now() - (i % 1000) * interval '1 second'"
                " FROM generate_series(1, 1000000) AS i"
            ).format(table)
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (queue, payload, serializer, state, last_error)"
                " SELECT 'q' || (i % 10), '\\x7b7d', 'json', 'failed', 'boom'"
                " FROM generate_series(1, 100000) AS i"
            ).format(table)
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (queue, payload, serializer, state, lease_until, claim_token)"
                " SELECT 'q' || (i % 10), '\\x7b7d', 'json', 'running',"
                "        now() + interval '1 hour', i"
                " FROM generate_series(1, 10000) AS i"
            ).format(table)
        )
        conn.execute(sql.SQL("ANALYZE {}").format(table))
    return harness


@pytest.mark.parametrize("generic", [False, True], ids=["custom-plan", "generic-plan"])
@pytest.mark.parametrize("queues", [["q1"], ["q1", "q2", "q3"]], ids=["1-queue", "3-queues"])
def test_claim_uses_the_ready_index(
    big: Harness, pg_conn: psycopg.Connection[Any], generic: bool, queues: list[str]
) -> None:
    broker: Any = big.broker
    params = {"queues": queues, "limit": 10, "lease": 30.0}
    nodes = _explain(pg_conn, broker._sql.claim, params, generic=generic)
    table = broker.names.table
    scans = [n for n in nodes if n.get("Relation Name") == table]
    assert scans, nodes
    assert all(n["Node Type"] != "Seq Scan" for n in scans), scans
    assert any(n.get("Index Name") == broker.names.claim_idx for n in nodes), scans


@pytest.mark.parametrize("generic", [False, True], ids=["custom-plan", "generic-plan"])
def test_reclaim_uses_the_lease_index(
    big: Harness, pg_conn: psycopg.Connection[Any], generic: bool
) -> None:
    broker: Any = big.broker
    nodes = _explain(pg_conn, broker._sql.reclaim, {"queues": ["q1"]}, generic=generic)
    scans = [n for n in nodes if n.get("Relation Name") == broker.names.table]
    assert all(n["Node Type"] != "Seq Scan" for n in scans), scans
    assert any(n.get("Index Name") == broker.names.lease_idx for n in nodes), scans


def test_claiming_from_the_big_table_is_fast(big: Harness) -> None:
    broker: Any = big.broker
    broker.claim(["q1"], 10, 30)  # warm up
    started = time.perf_counter()
    for _ in range(20):
        claimed = broker.claim(["q1", "q2"], 10, 30)
        assert len(claimed) == 10
    elapsed = (time.perf_counter() - started) / 20
    assert elapsed < 0.05, f"claim took {elapsed * 1000:.1f} ms on average"
