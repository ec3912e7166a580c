"""examples/component_app: the component-style app, on the memory broker."""

from __future__ import annotations

import subprocess
import sys

from examples.component_app.app import (
    Components,
    Database,
    Mailer,
    make_consumers,
    signup,
)
from taskmaster_core import JobState, Publisher
from taskmaster_memory import MemoryBroker

from .helpers import ROOT


def test_the_handlers_reach_their_dependencies_through_job_context() -> None:
    with MemoryBroker() as broker:
        components = Components(db=Database(), mailer=Mailer(), publisher=Publisher(broker))
        publisher = Publisher(broker)
        assert signup(publisher, "ada@example.com", "Ada") is not None
        assert signup(publisher, "ada@example.com", "Ada") is None  # dedup key
        signup(publisher, "nobody", "Nobody")
        signups, emails = make_consumers(broker, components)
        assert signups.drain(raise_errors=True) == 2
        assert emails.drain(raise_errors=True) == 1
        assert components.db.users() == ["ada@example.com"]
        assert components.db.emails_sent() == ["ada@example.com"]
        assert components.mailer.sent == [("ada@example.com", "Welcome, Ada!")]
        (failed,) = broker.jobs(states=[JobState.FAILED])
        assert failed.last_error == "not an email address: 'nobody'"
        components.db.close()


def test_a_signup_that_runs_twice_sends_one_email() -> None:
    with MemoryBroker() as broker:
        components = Components(db=Database(), mailer=Mailer(), publisher=Publisher(broker))
        signups, emails = make_consumers(broker, components)
        for _ in range(2):  # at least once: the same signup delivered again
            signup(Publisher(broker), "ada@example.com", "Ada")
            signups.drain(raise_errors=True)
            emails.drain(raise_errors=True)
        assert components.mailer.sent == [("ada@example.com", "Welcome, Ada!")]
        components.db.close()


def test_the_factory_builds_one_set_of_components() -> None:
    with MemoryBroker() as broker:
        consumers = make_consumers(broker)
        assert [c.name for c in consumers] == ["signups", "emails"]
        assert consumers[0].context is consumers[1].context  # one set of components
        assert isinstance(consumers[0].context, Components)


def test_python_m_runs_the_demo() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "examples.component_app"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "users: ada@example.com, alan@example.com",
        "sent: ada@example.com: Welcome, Ada!; alan@example.com: Welcome, Alan!",
        "failed: job 3 on 'signups': not an email address: 'not-an-email'",
    ]
