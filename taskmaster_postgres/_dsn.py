"""The DSN: what its options must look like, and how it is shown. (Which
connection failures are worth retrying is in ``_errors``.)

Connection retries are for a server that is unreachable or starting up. An
option whose syntax libpq fixes (a port that is not a number, an sslmode it
does not know) can never work, so :func:`check_options` refuses it when the
broker is built, with no I/O; libpq itself only says so when connecting, in
a message indistinguishable by type from "server unreachable".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from taskmaster_core import ConfigurationError

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "check_options",
    "describe_dsn",
    "dsn_connect_timeout",
]

DEFAULT_CONNECT_TIMEOUT = 10.0


# libpq's fixed vocabularies (PostgreSQL 16's libpq documentation).
_CHOICES = {
    "sslmode": ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
    "gssencmode": ("disable", "prefer", "require"),
    "channel_binding": ("disable", "prefer", "require"),
    "target_session_attrs": (
        "any",
        "read-write",
        "read-only",
        "primary",
        "standby",
        "prefer-standby",
    ),
    "load_balance_hosts": ("disable", "random"),
}
_WHOLE_NUMBERS = (
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
)


def check_options(params: Mapping[str, Any]) -> None:
    """Refuse options libpq would refuse on every attempt (see the module
    docstring). ``params`` is the parsed DSN (``conninfo_to_dict``)."""
    port = params.get("port")
    if port is not None:
        for one in str(port).split(","):  # one per host; empty takes the default
            if not one.strip():
                continue
            if not one.strip().isdigit():
                raise ConfigurationError(f"port {one!r} must be a number, in the DSN")
            if not 1 <= int(one) <= 65535:
                raise ConfigurationError(f"port {one!r} must be between 1 and 65535, in the DSN")
    for name, allowed in _CHOICES.items():
        value = params.get(name)
        if value is not None and str(value) not in allowed:
            raise ConfigurationError(
                f"{name}={value!r} must be one of: {', '.join(allowed)} (in the DSN)"
            )
    for name in _WHOLE_NUMBERS:
        value = params.get(name)
        if value is not None and not str(value).strip().isdigit():
            raise ConfigurationError(f"{name}={value!r} must be a whole number >= 0 (in the DSN)")


def describe_dsn(dsn: str) -> str:
    """``user@host:port/dbname`` for messages: never the password."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "<unparsable DSN>"
    host = str(params.get("host") or params.get("hostaddr") or "localhost")
    port = params.get("port")
    user = params.get("user")
    where = f"{host}:{port}" if port else host
    dbname = params.get("dbname")
    return f"{f'{user}@' if user else ''}{where}{f'/{dbname}' if dbname else ''}"


def dsn_connect_timeout(value: str | int | None) -> float:
    """The DSN's own ``connect_timeout`` (libpq's, in seconds; or
    ``PGCONNECT_TIMEOUT``'s), else the default."""
    if value is None or value == "":
        return DEFAULT_CONNECT_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < math.inf:
        # libpq would wait forever; a broker needs a bound for its retries.
        raise ConfigurationError(
            f"connect_timeout={value!r} in the DSN must be a positive number of seconds"
        )
    return seconds
