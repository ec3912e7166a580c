"""examples/fastapi_app on Postgres, driven through httpx's ASGI transport.

The app's lifespan runs explicitly (``app.router.lifespan_context``: the
transport does not run it), so its async consumer handles jobs on the test's
own event loop while requests are served. Each test has its own queue,
orders table and jobs schema. Async tests run on anyio's pytest plugin
(installed with httpx), asyncio backend.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import psycopg
import pytest
from fastapi import FastAPI
from psycopg import sql

from examples.fastapi_app.app import (
    DECLINED_CARD,
    FakePaymentGateway,
    PaymentGateway,
    Settings,
    create_app,
    get_payments,
)
from taskmaster_core import JobInfo, JobState
from taskmaster_postgres import PostgresBroker

APP_LOGGER = "examples.fastapi_app.app"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the consumer runs its handlers on an asyncio loop


@pytest.fixture
def settings(pg_dsn: str) -> Iterator[Settings]:
    name = secrets.token_hex(5)
    # keep_done: an acked job stays as `done`, so the tests can see every job
    # that was ever committed on their queue.
    yield Settings(
        dsn=pg_dsn,
        queue=f"order-emails-{name}",
        orders_table=f"orders_{name}",
        jobs_schema=f"tm_fastapi_{name}",
        keep_done=True,
    )
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(f"orders_{name}")))
        conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(f"tm_fastapi_{name}"))
        )


@asynccontextmanager
async def running_app(
    settings: Settings, payments: PaymentGateway | None = None
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app with its lifespan running, and a client for it. A crashing
    request answers 500 (as under a server) instead of raising here."""
    app = create_app(settings)
    if payments is not None:
        app.dependency_overrides[get_payments] = lambda: payments
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://app.test") as client,
    ):
        yield app, client


async def orders_in_table(settings: Settings) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(settings.dsn, autocommit=True) as conn:
        cur = await conn.execute(
            sql.SQL("SELECT id, email, total_cents, charge_id FROM {} ORDER BY id").format(
                sql.Identifier(settings.orders_table)
            )
        )
        return await cur.fetchall()


async def jobs_on_queue(app: FastAPI, settings: Settings) -> list[JobInfo]:
    broker: PostgresBroker = app.state.resources.broker
    return await anyio.to_thread.run_sync(lambda: broker.jobs(queue=settings.queue))


async def wait_emailed(client: httpx.AsyncClient, order_id: int) -> dict[str, Any]:
    """GET the order until the handler has marked it emailed."""
    with anyio.fail_after(10):
        while True:
            response = await client.get(f"/orders/{order_id}")
            assert response.status_code == 200, response.text
            order: dict[str, Any] = response.json()
            if order["emailed_at"] is not None:
                return order
            await anyio.sleep(0.02)


async def place(client: httpx.AsyncClient, email: str, card: str = "tok_visa") -> httpx.Response:
    return await client.post("/orders", json={"email": email, "total_cents": 4200, "card": card})


@pytest.mark.postgres
@pytest.mark.anyio
async def test_an_order_and_its_job_commit_together_and_the_handler_marks_it_emailed(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=APP_LOGGER)
    async with running_app(settings) as (app, client):
        assert app.state.consumer.is_async
        response = await place(client, "ada@example.com")
        assert response.status_code == 201, response.text
        placed = response.json()
        order_id, job_id = placed["id"], placed["job_id"]

        # Both were committed: the order row, and one job for it on the queue.
        assert await orders_in_table(settings) == [
            (order_id, "ada@example.com", 4200, placed["charge_id"])
        ]
        jobs = await jobs_on_queue(app, settings)
        assert [job.id for job in jobs] == [job_id]
        assert json.loads(jobs[0].payload) == {"order_id": order_id}

        # The consumer, running in the lifespan, handles it: the order is emailed.
        order = await wait_emailed(client, order_id)
        assert order["email"] == "ada@example.com"
        assert await app.state.consumer.wait_idle_async(5)  # its outcome is recorded too
        [job] = await jobs_on_queue(app, settings)
        assert (job.state, job.attempts) == (JobState.DONE, 1)

    # The handler ran on this test's event loop (its thread), not a worker thread.
    emailed = [r for r in caplog.records if r.getMessage().startswith("emailing ")]
    assert [r.getMessage() for r in emailed] == [
        f"emailing ada@example.com: order {order_id} is confirmed"
    ]
    assert emailed[0].thread == threading.get_ident()


class RecordingGateway(FakePaymentGateway):
    """Records each charge's reference, then fails as told."""

    def __init__(self, error: Exception | None) -> None:
        self.references: list[str] = []
        self.error = error

    async def charge(self, card: str, amount_cents: int, *, reference: str) -> str:
        self.references.append(reference)
        if self.error is not None:
            raise self.error
        return await super().charge(card, amount_cents, reference=reference)


@pytest.mark.postgres
@pytest.mark.anyio
@pytest.mark.parametrize(
    ("card", "error", "status"),
    [
        (DECLINED_CARD, None, 402),  # the fake gateway declines it: HTTPException
        ("tok_visa", RuntimeError("payment gateway crashed"), 500),  # an unhandled exception
    ],
    ids=["declined", "crash"],
)
async def test_a_request_that_fails_after_the_put_leaves_neither_the_order_nor_its_job(
    settings: Settings, card: str, error: Exception | None, status: int
) -> None:
    gateway = RecordingGateway(error)
    async with running_app(settings, payments=gateway) as (app, client):
        response = await place(client, "bob@example.com", card)
        assert response.status_code == status, response.text
        # The charge came after the insert and the put (the order had an id)...
        [reference] = gateway.references
        failed_id = int(reference.removeprefix("order-"))
        # ...and both were rolled back with the transaction.
        assert await orders_in_table(settings) == []
        assert (await client.get(f"/orders/{failed_id}")).status_code == 404
        assert await jobs_on_queue(app, settings) == []  # keep_done: none ever committed

        # The pool's connection came back clean: the next order goes through.
        gateway.error = None
        response = await place(client, "carol@example.com")
        assert response.status_code == 201, response.text
        placed = response.json()
        await wait_emailed(client, placed["id"])
        jobs = await jobs_on_queue(app, settings)
        assert [json.loads(job.payload) for job in jobs] == [{"order_id": placed["id"]}]


def test_the_app_needs_a_postgres_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TASKMASTER_URL", raising=False)
    with pytest.raises(RuntimeError, match="set TASKMASTER_URL to a PostgreSQL URL"):
        Settings.from_env()
    monkeypatch.setenv("TASKMASTER_URL", "memory://")
    with pytest.raises(RuntimeError, match="set TASKMASTER_URL to a PostgreSQL URL"):
        Settings.from_env()
    monkeypatch.setenv("TASKMASTER_URL", "postgresql://localhost/app")
    assert Settings.from_env().dsn == "postgresql://localhost/app"
    # The URL as the taskmaster command takes it: ?schema= is the jobs table's schema.
    monkeypatch.setenv("TASKMASTER_URL", "postgresql://u@localhost/app?schema=shop&sslmode=prefer")
    monkeypatch.setenv("ORDERS_TABLE", "shop_orders")
    settings = Settings.from_env()
    assert settings.dsn == "postgresql://u@localhost/app?sslmode=prefer"
    assert (settings.jobs_schema, settings.orders_table) == ("shop", "shop_orders")
