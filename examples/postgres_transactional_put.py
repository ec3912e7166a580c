"""Postgres: a job that commits or rolls back with your own transaction.

Usage: python examples/postgres_transactional_put.py [DSN]
(the DSN defaults to $TASKMASTER_URL, e.g. postgresql://localhost/app).
"""

from __future__ import annotations

import os
import sys

import psycopg

from taskmaster_core import ACK, Consumer, Job, Outcome, Publisher
from taskmaster_postgres import PostgresBroker


class PaymentDeclined(Exception):
    pass


def send_receipt(job: Job) -> Outcome:
    print(f"sending the receipt for order {job.payload['order_id']}")
    return ACK


def main(dsn: str) -> None:
    with PostgresBroker(dsn) as broker:
        broker.migrate()  # creates or upgrades the jobs table; safe to run every time
        publisher = Publisher(broker)

        # autocommit: each `with conn.transaction()` below is one real transaction.
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS orders (id serial PRIMARY KEY, total int)")

            # Committed: the order and its job exist together.
            with conn.transaction():
                row = conn.execute("INSERT INTO orders (total) VALUES (42) RETURNING id").fetchone()
                assert row is not None
                kept = publisher.put("receipts", {"order_id": row[0]}, connection=conn)

            # Rolled back: neither the order nor its job exist.
            lost = None
            try:
                with conn.transaction():
                    conn.execute("INSERT INTO orders (total) VALUES (13)")
                    lost = publisher.put("receipts", {"order_id": -1}, connection=conn)
                    raise PaymentDeclined
            except PaymentDeclined:
                print("payment declined: the transaction rolled back")

        for job_id in (kept, lost):
            stored = job_id is not None and bool(broker.jobs(ids=[job_id]))
            print(f"job {job_id} stored: {stored}")

        with Consumer(broker, "receipts", send_receipt) as consumer:
            assert consumer.wait_idle()


if __name__ == "__main__":
    dsn = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("TASKMASTER_URL")
    if not dsn:
        sys.exit("usage: postgres_transactional_put.py DSN (or set TASKMASTER_URL)")
    main(dsn)
