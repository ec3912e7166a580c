"""A DSN option that retrying cannot fix is a ConfigurationError at once.

Connection retries are for a server that is unreachable or starting up. A
malformed option (a port that is not a number, an unknown sslmode) or a
server that turns us away (no such database, failed authentication) fails at
once, with one line, and the CLI exits 2 for the former.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from taskmaster_core import BrokerError, ConfigurationError
from taskmaster_postgres import PostgresBroker

BAD_OPTIONS = [
    ("postgresql://root@127.0.0.1:notaport/db", "port 'notaport' must be a number"),
    ("postgresql://root@127.0.0.1:99999/db", "port '99999' must be between 1 and 65535"),
    ("host=a,b port=5432,x dbname=db", "port 'x' must be a number"),
    ("postgresql://u@h/db?sslmode=bogus", "sslmode='bogus' must be one of: disable, allow,"),
    ("postgresql://u@h/db?gssencmode=x", "gssencmode='x' must be one of: disable, prefer, require"),
    ("postgresql://u@h/db?target_session_attrs=bogus", "target_session_attrs='bogus' must be"),
    ("postgresql://u@h/db?keepalives=x", "keepalives='x' must be a whole number"),
    ("postgresql://u@h/db?keepalives_idle=-1", "keepalives_idle='-1' must be a whole number"),
    ("postgresql://u@h/db?tcp_user_timeout=1.5", "tcp_user_timeout='1.5' must be a whole number"),
]


@pytest.mark.parametrize(("dsn", "message"), BAD_OPTIONS)
def test_a_malformed_option_is_refused_when_the_broker_is_built(dsn: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("?", r"\?")):
        PostgresBroker(dsn)


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://u@h:5432/db?sslmode=verify-full&keepalives=1&keepalives_idle=30",
        "host=a,b port=5432, dbname=db target_session_attrs=read-write",
        "postgresql://u@h/db?gssencmode=disable&tcp_user_timeout=0",
    ],
)
def test_well_formed_options_are_accepted(dsn: str) -> None:
    PostgresBroker(dsn)  # builds without I/O; nothing to raise


def test_the_cli_exits_2_at_once_for_a_malformed_url() -> None:
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "taskmaster_core._cli",
            "--url",
            "postgresql://root@127.0.0.1:notaport/db",
            "stats",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "port 'notaport' must be a number" in lines[0], done.stderr
    assert elapsed < 5, f"took {elapsed:.1f}s: it was retried"


@pytest.mark.postgres
def test_a_server_that_turns_us_away_fails_at_once(pg_dsn: str) -> None:
    broker = PostgresBroker(pg_dsn + " user=no_such_role_here", connect_timeout=10)
    started = time.monotonic()
    with pytest.raises(BrokerError, match='role "no_such_role_here" does not exist'):
        broker.open()
    assert time.monotonic() - started < 3
