"""A component-style Taskmaster app: consumers built with their dependencies.

Two queues form a small signup flow:

- ``signups``: store the user in the database, then put a welcome email job;
- ``emails``: send the welcome email through the mailer and record it.

The handlers reach the database, the mailer and the publisher through
``job.context`` (a ``Components``), never through globals, so tests can build
the same consumers with their own components. ``make_consumers(broker)`` is
the factory for ``taskmaster worker``:

    taskmaster --url postgresql://localhost/app worker examples.component_app.app:make_consumers

Configuration comes from the environment (the worker command takes only the
APP):

- ``COMPONENT_APP_DB``: the SQLite database file (default ``:memory:``);
- ``COMPONENT_APP_MAIL_LATENCY``: seconds each email takes to send (default 0).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from dataclasses import dataclass

import msgspec

from taskmaster_core import ACK, Broker, Consumer, Job, Outcome, Publisher, Reject


class Signup(msgspec.Struct):
    """Payload of a ``signups`` job."""

    email: str
    name: str


class WelcomeEmail(msgspec.Struct):
    """Payload of an ``emails`` job."""

    email: str
    name: str


class Database:
    """The application's database: users and the emails sent to them.

    One SQLite connection shared by the worker threads, behind a lock.
    """

    def __init__(self, path: str = ":memory:") -> None:
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA busy_timeout = 5000")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS users (email TEXT PRIMARY KEY, name TEXT NOT NULL)"
        )
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS emails_sent ("
            " job_id INTEGER NOT NULL, email TEXT NOT NULL, subject TEXT NOT NULL)"
        )

    def add_user(self, email: str, name: str) -> None:
        """Store a user (idempotent: a job may run twice)."""
        with self._lock:
            self._conn.execute(
                "INSERT INTO users (email, name) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (email, name),
            )

    def was_welcomed(self, email: str) -> bool:
        with self._lock:
            row = self._conn.execute("SELECT 1 FROM emails_sent WHERE email = ?", (email,))
            return row.fetchone() is not None

    def record_email(self, job_id: int, email: str, subject: str) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO emails_sent (job_id, email, subject) VALUES (?, ?, ?)",
                (job_id, email, subject),
            )

    def users(self) -> list[str]:
        with self._lock:
            return [row[0] for row in self._conn.execute("SELECT email FROM users ORDER BY 1")]

    def emails_sent(self) -> list[str]:
        with self._lock:
            rows = self._conn.execute("SELECT email FROM emails_sent ORDER BY rowid")
            return [row[0] for row in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class Mailer:
    """Another service: sends email (here it only records what it sends)."""

    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency
        self.sent: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def send(self, to: str, subject: str) -> None:
        time.sleep(self.latency)  # the network round trip of a real mail API
        with self._lock:
            self.sent.append((to, subject))


@dataclass
class Components:
    """What the handlers depend on, handed to them as ``job.context``."""

    db: Database
    mailer: Mailer
    publisher: Publisher


# -- publishing -------------------------------------------------------------


def signup(publisher: Publisher, email: str, name: str) -> int | None:
    """Put a signup job; returns its id (``None`` if that email is already queued)."""
    return publisher.put("signups", Signup(email=email, name=name), dedup_key=f"signup:{email}")


# -- handlers ---------------------------------------------------------------


def handle_signup(job: Job) -> Outcome:
    components: Components = job.context
    signup: Signup = job.payload
    if "@" not in signup.email:
        return Reject(f"not an email address: {signup.email!r}")
    components.db.add_user(signup.email, signup.name)
    # At least once: if this job runs again (its worker died after the insert),
    # the insert is a no-op and the dedup key keeps the email job single.
    if not components.db.was_welcomed(signup.email):
        components.publisher.put(
            "emails",
            WelcomeEmail(email=signup.email, name=signup.name),
            dedup_key=f"welcome:{signup.email}",
        )
    return ACK


def send_welcome(job: Job) -> Outcome:
    components: Components = job.context
    email: WelcomeEmail = job.payload
    subject = f"Welcome, {email.name}!"
    components.mailer.send(email.email, subject)
    components.db.record_email(job.id, email.email, subject)
    return ACK


# -- building the system ----------------------------------------------------


def make_components(broker: Broker) -> Components:
    """Build the dependencies from the environment (see the module docstring)."""
    return Components(
        db=Database(os.environ.get("COMPONENT_APP_DB", ":memory:")),
        mailer=Mailer(latency=float(os.environ.get("COMPONENT_APP_MAIL_LATENCY", "0"))),
        publisher=Publisher(broker),
    )


def make_consumers(broker: Broker, components: Components | None = None) -> list[Consumer]:
    """The factory for ``taskmaster worker``: the app's consumers on ``broker``."""
    components = components if components is not None else make_components(broker)
    return [
        Consumer(
            broker,
            "signups",
            handle_signup,
            payload_type=Signup,
            context=components,
            concurrency=2,
            name="signups",
        ),
        Consumer(
            broker,
            "emails",
            send_welcome,
            payload_type=WelcomeEmail,
            context=components,
            concurrency=8,  # I/O-bound: threads wait on the mail API
            name="emails",
        ),
    ]
