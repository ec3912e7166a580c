"""psycopg's exceptions as Taskmaster's: the one translation map.

Every place in this package that catches a driver error goes through
:func:`translate` (or the :func:`translated` context manager around it), so
each psycopg exception becomes exactly one subclass of ``BrokerError``,
chained with ``raise ... from``. Callers act on the type, never on the text.

==========================================  ============================
psycopg exception / SQLSTATE                 Taskmaster error
==========================================  ============================
``psycopg_pool.PoolClosed``                  ``BrokerClosedError``
``psycopg_pool.PoolTimeout``                 ``BrokerUnavailableError``
class 08 (connection exception)              ``BrokerUnavailableError``
57P01 admin_shutdown, 57P02 crash_shutdown,  ``BrokerUnavailableError``
57P03 cannot_connect_now, 53300
too_many_connections
``OperationalError`` without SQLSTATE        ``BrokerUnavailableError``
(unreachable, connection lost or closed)
... a login refused for good (see below)     ``BrokerConfigurationError``
28000, 28P01 (authorization), 3D000 (no      ``BrokerConfigurationError``
such database)
42P01 undefined_table, 3F000                 ``SchemaMissingError``
invalid_schema_name, 42703 undefined_column
(a table older than this code)
42501 insufficient_privilege                 ``PermissionDeniedError``
anything else: 57014 query_canceled (a       ``BrokerError``
``statement_timeout``), deadlocks, data
errors, bugs
==========================================  ============================

A statement that ran out of ``statement_timeout`` is a plain ``BrokerError``
on purpose: the server is up and answered; retrying the same statement under
the same load may well time out again.

libpq reports a failed connection attempt without a SQLSTATE, in words. A
refusal that waiting will not change (no such database or role, wrong
password, ``pg_hba.conf``) is told from an unreachable or starting server by
its text (:func:`turned_away`); a localized message is never recognised and
counts as unavailable (retried until ``connect_timeout``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import psycopg_pool

from taskmaster_core import (
    BrokerClosedError,
    BrokerConfigurationError,
    BrokerError,
    BrokerUnavailableError,
    PermissionDeniedError,
    SchemaMissingError,
)

__all__ = ["error_type", "one_line", "server_reason", "translate", "translated", "turned_away"]

_BY_SQLSTATE: dict[str, type[BrokerError]] = {
    "42P01": SchemaMissingError,  # undefined_table
    "3F000": SchemaMissingError,  # invalid_schema_name
    "42703": SchemaMissingError,  # undefined_column: a table at an older version
    "42501": PermissionDeniedError,  # insufficient_privilege
    "57P01": BrokerUnavailableError,  # admin_shutdown
    "57P02": BrokerUnavailableError,  # crash_shutdown
    "57P03": BrokerUnavailableError,  # cannot_connect_now (starting up)
    "53300": BrokerUnavailableError,  # too_many_connections
    "28000": BrokerConfigurationError,  # invalid_authorization_specification
    "28P01": BrokerConfigurationError,  # invalid_password
    "3D000": BrokerConfigurationError,  # invalid_catalog_name (no such database)
}
_BY_SQLSTATE_CLASS: dict[str, type[BrokerError]] = {
    "08": BrokerUnavailableError,  # connection_exception
}

_TRANSIENT_REFUSALS = (
    "starting up",
    "shutting down",
    "in recovery mode",
    "not yet accepting connections",
    "too many clients",
    "connection slots are reserved",
)


def turned_away(exc: psycopg.Error) -> bool:
    """The server answered a connection attempt and refused us for a reason
    that waiting will not change (wrong password, no such database or role,
    pg_hba.conf), rather than being unreachable or busy starting up."""
    text = str(exc)
    return "FATAL:" in text and not any(t in text for t in _TRANSIENT_REFUSALS)


def error_type(exc: psycopg.Error) -> type[BrokerError]:
    """The ``BrokerError`` subclass for a psycopg error (the module's table)."""
    if isinstance(exc, psycopg_pool.PoolClosed):
        return BrokerClosedError
    if isinstance(exc, psycopg_pool.PoolTimeout):
        return BrokerUnavailableError
    state = exc.sqlstate
    if state is None:
        if isinstance(exc, psycopg.OperationalError):
            return BrokerConfigurationError if turned_away(exc) else BrokerUnavailableError
        return BrokerError
    return _BY_SQLSTATE.get(state) or _BY_SQLSTATE_CLASS.get(state[:2], BrokerError)


def translate(
    exc: psycopg.Error, message: str, *, where: str | None = None, reason: str | None = None
) -> BrokerError:
    """``exc`` as its ``BrokerError`` subclass, saying ``message``; the caller
    raises it ``from exc``."""
    return error_type(exc)(message, where=where, reason=reason)


@contextmanager
def translated(action: str, where: str) -> Iterator[None]:
    """Every psycopg error inside becomes its ``BrokerError`` subclass, saying
    ``<action> failed on <where>: <the driver's message>`` (``<action>: the
    broker is closed`` for a closed pool)."""
    try:
        yield
    except psycopg_pool.PoolClosed as exc:
        raise BrokerClosedError(f"{action}: the broker is closed", where=where) from exc
    except psycopg.Error as exc:
        reason = server_reason(exc)
        message = f"{action} failed on {where}: {reason}"
        raise translate(exc, message, where=where, reason=reason) from exc


def server_reason(exc: psycopg.Error) -> str:
    """The server's own words on one line: its primary message and hint,
    without the statement context (``LINE 2: INSERT …`` and a caret) that
    psycopg appends; libpq's message on one line when the server said
    nothing (a connection failure)."""
    primary = exc.diag.message_primary
    if not primary:
        return one_line(exc)
    hint = exc.diag.message_hint
    return f"{primary}; {hint}" if hint else primary


def one_line(exc: BaseException) -> str:
    """libpq's message on one line: its lines joined with '; ' (it breaks a
    message into a reason and a hint, and ends it with a newline)."""
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
