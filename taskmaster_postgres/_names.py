"""Names of everything the broker creates in the database, validated once.

PostgreSQL silently truncates identifiers to 63 bytes (NAMEDATALEN - 1), so a
name that is too long would quietly collide with another one. The schema and
table names the user chooses are refused when longer than that; names derived
from the table (indexes, sequences, the trigger function) keep the readable
``<table>_<suffix>`` form when it fits and otherwise shorten the table part and
add a hash of the full name, so they stay unique and within the limit.

Every name is used through :class:`psycopg.sql.Identifier` (always quoted), so
any characters are accepted: case, spaces, quotes, unicode.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from psycopg import sql

from taskmaster_core import ConfigurationError

__all__ = [
    "MAX_IDENTIFIER_BYTES",
    "TableNames",
    "for_parameters",
]

MAX_IDENTIFIER_BYTES = 63
"""PostgreSQL's identifier limit (NAMEDATALEN - 1) in bytes."""

VERSIONS_TABLE = "taskmaster_schema_versions"
"""One per schema: which migrations each jobs table of that schema has had."""


def _check_identifier(kind: str, name: object) -> str:
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"{kind} name must be a non-empty string, got {name!r}")
    if "\x00" in name:
        raise ConfigurationError(f"{kind} name {name!r} contains a NUL character")
    size = len(name.encode())
    if size > MAX_IDENTIFIER_BYTES:
        raise ConfigurationError(
            f"{kind} name {name!r} is {size} bytes; PostgreSQL identifiers are limited "
            f"to {MAX_IDENTIFIER_BYTES} bytes (longer names would be silently truncated)"
        )
    return name


def _short_hash(text: str, length: int = 12) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _truncate_utf8(text: str, max_bytes: int) -> str:
    """The longest prefix of ``text`` that is at most ``max_bytes`` in UTF-8."""
    return text.encode()[:max_bytes].decode(errors="ignore")


def derived_name(table: str, suffix: str) -> str:
    """``<table>_<suffix>``, shortened with a hash of ``table`` if over 63 bytes."""
    name = f"{table}_{suffix}"
    if len(name.encode()) <= MAX_IDENTIFIER_BYTES:
        return name
    digest = _short_hash(table, 8)
    room = MAX_IDENTIFIER_BYTES - len(f"_{digest}_{suffix}".encode())
    return f"{_truncate_utf8(table, room)}_{digest}_{suffix}"


def for_parameters(name: sql.Composable) -> sql.SQL:
    """``name`` rendered with ``%`` doubled, for a statement run with
    parameters: psycopg reads every ``%`` of such a query, even inside a
    quoted identifier, as the start of a placeholder."""
    return sql.SQL(name.as_string(None).replace("%", "%%"))


@dataclass(frozen=True)
class TableNames:
    """The schema/table the user chose and every name derived from them."""

    schema: str
    table: str
    id_seq: str = field(init=False)
    token_seq: str = field(init=False)
    claim_idx: str = field(init=False)
    lease_idx: str = field(init=False)
    dedup_idx: str = field(init=False)
    finished_idx: str = field(init=False)
    notify_fn: str = field(init=False)
    notify_trigger: str = field(init=False)
    queues_table: str = field(init=False)
    """Per-queue settings (version 2): which queues are paused."""
    channel: str = field(init=False)
    """LISTEN/NOTIFY channel: ``taskmaster_`` + a hash of schema and table, so
    it is short, lower case and distinct per table."""
    lock_key: int = field(init=False)
    """Key for ``pg_advisory_xact_lock`` serialising migrations of this table."""

    def __post_init__(self) -> None:
        _check_identifier("schema", self.schema)
        _check_identifier("table", self.table)
        derived = {
            "id_seq": "id_seq",
            "token_seq": "token_seq",
            "claim_idx": "claim_idx",
            "lease_idx": "lease_idx",
            "dedup_idx": "dedup_idx",
            "finished_idx": "finished_idx",
            "notify_fn": "notify",
            "notify_trigger": "notify",
            "queues_table": "queues",
        }
        for attr, suffix in derived.items():
            object.__setattr__(self, attr, derived_name(self.table, suffix))
        qualified = f"{self.schema}\x00{self.table}"
        object.__setattr__(self, "channel", "taskmaster_" + _short_hash(qualified, 16))
        digest = hashlib.sha256(b"taskmaster-migrate\x00" + qualified.encode()).digest()
        object.__setattr__(self, "lock_key", int.from_bytes(digest[:8], "big", signed=True))

    def ident(self, name: str) -> sql.Identifier:
        """A schema-qualified identifier for one of this table's objects."""
        return sql.Identifier(self.schema, name)

    @property
    def qualified(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.table)

    @property
    def display(self) -> str:
        return sql.Identifier(self.schema, self.table).as_string(None)
