"""Taskmaster in a FastAPI app: async handlers on the app's event loop, and
jobs put in the same transaction as the app's own rows.

- The **lifespan** opens the ``PostgresBroker``, a
  ``psycopg_pool.AsyncConnectionPool`` for the app's own SQL, an
  ``AsyncPublisher``, and ``async with Consumer(...)`` with an ``async def``
  handler: the handlers run as tasks on the app's event loop, beside the
  requests. On shutdown the consumer stops first (running handlers finish),
  then the pool and the broker close.
- ``POST /orders`` inserts the order and puts an ``order-emails`` job on the
  same ``AsyncConnection``, in one transaction, then charges the card. A
  declined card (402), or any other exception before the end of the
  transaction block (500), rolls back both: there is never an order without
  its job, nor a job for an order that does not exist.
- The handler ``send_confirmation`` "emails" the customer (a log line) and
  sets the order's ``emailed_at``; ``GET /orders/{id}`` shows it.

Run it (see README.md): ``TASKMASTER_URL=postgresql://localhost/app uvicorn
examples.fastapi_app.app:app``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec
import psycopg
from fastapi import Depends, FastAPI, HTTPException, Request
from psycopg import sql
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, Field

from taskmaster_core import ACK, REJECT, AsyncPublisher, Consumer, Job, Outcome, QueueOptions
from taskmaster_postgres import PostgresBroker

__all__ = ["Settings", "app", "create_app"]

logger = logging.getLogger(__name__)

Pool = AsyncConnectionPool[psycopg.AsyncConnection[TupleRow]]


# -- configuration -------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """Where the app keeps its data. ``from_env`` reads ``TASKMASTER_URL``."""

    dsn: str
    queue: str = "order-emails"
    orders_table: str = "orders"
    jobs_schema: str = "public"
    """The schema of Taskmaster's jobs table (created by ``migrate``)."""
    concurrency: int = 4
    """Handlers running at once, as tasks on the app's loop."""
    keep_done: bool = False
    """Keep acked jobs as ``done`` instead of deleting them (an audit trail)."""

    @classmethod
    def from_env(cls) -> Settings:
        """``TASKMASTER_URL`` as the ``taskmaster`` command reads it: a
        PostgreSQL URL whose ``schema`` query option (if any) is the jobs
        table's schema; ``ORDERS_TABLE`` names the app's own table."""
        url = os.environ.get("TASKMASTER_URL", "")
        if not url or url.startswith("memory:"):
            raise RuntimeError(
                "set TASKMASTER_URL to a PostgreSQL URL (e.g. postgresql://localhost/app): "
                "this example puts jobs in the transactions of its own Postgres table"
            )
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        ours = dict(item for item in query if item[0] == "schema")
        dsn = urlunsplit(parts._replace(query=urlencode([i for i in query if i[0] != "schema"])))
        return cls(
            dsn=dsn,
            jobs_schema=ours.get("schema", "public"),
            orders_table=os.environ.get("ORDERS_TABLE", "orders"),
        )


# -- the job and its handler ---------------------------------------------------


class OrderPlaced(msgspec.Struct):
    """The payload of an ``order-emails`` job."""

    order_id: int


@dataclass(frozen=True)
class Resources:
    """What the lifespan opens; requests reach it as ``app.state.resources``
    (through ``get_resources``), handlers as ``job.context``."""

    settings: Settings
    broker: PostgresBroker
    pool: Pool
    publisher: AsyncPublisher


async def send_confirmation(job: Job) -> Outcome:
    """Email the customer, then record it. It runs on the app's event loop;
    a job may run twice (a worker killed after the email), so the update is
    guarded and the email would be, in a real app, by an idempotency key."""
    resources: Resources = job.context
    event: OrderPlaced = job.payload
    orders = sql.Identifier(resources.settings.orders_table)
    async with resources.pool.connection() as conn:
        cur = await conn.execute(
            sql.SQL("SELECT email, emailed_at FROM {} WHERE id = %s").format(orders),
            [event.order_id],
        )
        row = await cur.fetchone()
        if row is None:  # cannot happen: the job committed with its order
            return REJECT
        email, emailed_at = row
        if emailed_at is None:
            logger.info("emailing %s: order %d is confirmed", email, event.order_id)
            await conn.execute(
                sql.SQL("UPDATE {} SET emailed_at = now() WHERE id = %s").format(orders),
                [event.order_id],
            )
    return ACK


# -- payments ------------------------------------------------------------------


class PaymentDeclined(Exception):
    pass


class PaymentGateway(Protocol):
    async def charge(self, card: str, amount_cents: int, *, reference: str) -> str:
        """Charge ``card`` (a token from the payment form); return the charge's
        id, or raise ``PaymentDeclined``."""
        ...


DECLINED_CARD = "tok_chargeDeclined"


class FakePaymentGateway:
    """Accepts every card but ``DECLINED_CARD``."""

    async def charge(self, card: str, amount_cents: int, *, reference: str) -> str:
        if card == DECLINED_CARD:
            raise PaymentDeclined(f"card declined for {reference}")
        return f"ch_{secrets.token_hex(8)}"


def get_payments() -> PaymentGateway:
    """A dependency, so tests can swap it (``app.dependency_overrides``)."""
    return FakePaymentGateway()


def get_resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


# -- the app -------------------------------------------------------------------


class NewOrder(BaseModel):
    email: str = Field(min_length=3, pattern=r"^[^@\s]+@[^@\s]+$")
    total_cents: int = Field(gt=0)
    card: str
    """A card token from the payment form (``tok_visa``; ``tok_chargeDeclined``
    is declined)."""


class PlacedOrder(BaseModel):
    id: int
    job_id: int | None
    charge_id: str


class Order(BaseModel):
    id: int
    email: str
    total_cents: int
    emailed_at: datetime | None


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app; ``settings`` default to ``Settings.from_env()``, read at startup."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        config = settings or Settings.from_env()
        orders = sql.Identifier(config.orders_table)
        broker = PostgresBroker(config.dsn, schema=config.jobs_schema, keep_done=config.keep_done)
        # The broker's own calls are sync: open and migrate it off the loop.
        await asyncio.to_thread(broker.open)
        try:
            # Here for a self-contained example; in production run
            # `taskmaster --url ... migrate` once per deployment instead.
            await asyncio.to_thread(broker.migrate)
            pool: Pool = AsyncConnectionPool(
                config.dsn, min_size=1, max_size=10, kwargs={"autocommit": True}, open=False
            )
            async with pool:
                await pool.wait()
                async with pool.connection() as conn:
                    await conn.execute(
                        sql.SQL(
                            "CREATE TABLE IF NOT EXISTS {} (id bigserial PRIMARY KEY,"
                            " email text NOT NULL, total_cents int NOT NULL,"
                            " charge_id text, emailed_at timestamptz)"
                        ).format(orders)
                    )
                publisher = AsyncPublisher(
                    broker, queues={config.queue: QueueOptions(payload_type=OrderPlaced)}
                )
                resources = Resources(config, broker, pool, publisher)
                consumer = Consumer(
                    broker,
                    config.queue,
                    send_confirmation,
                    concurrency=config.concurrency,
                    context=resources,
                    payload_type=OrderPlaced,
                )
                async with consumer:  # its handlers run as tasks on this loop
                    app.state.resources = resources
                    app.state.consumer = consumer
                    yield
                # Shutdown: the consumer has stopped (running handlers finished),
                # now the pool closes, then the broker.
        finally:
            await asyncio.to_thread(broker.close)

    app = FastAPI(title="Taskmaster FastAPI example", lifespan=lifespan)

    @app.post("/orders", status_code=201)
    async def place_order(
        order: NewOrder,
        resources: Annotated[Resources, Depends(get_resources)],
        payments: Annotated[PaymentGateway, Depends(get_payments)],
    ) -> PlacedOrder:
        config = resources.settings
        orders = sql.Identifier(config.orders_table)
        try:
            async with resources.pool.connection() as conn, conn.transaction():
                cur = await conn.execute(
                    sql.SQL(
                        "INSERT INTO {} (email, total_cents) VALUES (%s, %s) RETURNING id"
                    ).format(orders),
                    [order.email, order.total_cents],
                )
                row = await cur.fetchone()
                assert row is not None
                order_id: int = row[0]
                # On our connection: the job commits or rolls back with the order.
                job_id = await resources.publisher.put(
                    config.queue, OrderPlaced(order_id=order_id), connection=conn
                )
                # Last, the card. Whatever raises before the block ends (a
                # decline, a crash) rolls back the order and its job together.
                charge_id = await payments.charge(
                    order.card, order.total_cents, reference=f"order-{order_id}"
                )
                await conn.execute(
                    sql.SQL("UPDATE {} SET charge_id = %s WHERE id = %s").format(orders),
                    [charge_id, order_id],
                )
        except PaymentDeclined as exc:
            raise HTTPException(status_code=402, detail=str(exc)) from exc
        # Committed: the order and its job exist, and the consumer was woken.
        return PlacedOrder(id=order_id, job_id=job_id, charge_id=charge_id)

    @app.get("/orders/{order_id}")
    async def get_order(
        order_id: int, resources: Annotated[Resources, Depends(get_resources)]
    ) -> Order:
        orders = sql.Identifier(resources.settings.orders_table)
        async with resources.pool.connection() as conn:
            cur = await conn.execute(
                sql.SQL("SELECT id, email, total_cents, emailed_at FROM {} WHERE id = %s").format(
                    orders
                ),
                [order_id],
            )
            row: Any = await cur.fetchone()
        if row is None:
            raise HTTPException(status_code=404, detail=f"no order {order_id}")
        return Order(id=row[0], email=row[1], total_cents=row[2], emailed_at=row[3])

    return app


app = create_app()
"""For ``uvicorn examples.fastapi_app.app:app`` (settings from the environment)."""
