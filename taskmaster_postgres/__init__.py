"""Taskmaster's PostgreSQL broker: LISTEN/NOTIFY wake-ups, SKIP LOCKED claims."""

import typing as _typing

try:
    from ._broker import PostgresBroker
    from ._schema import LATEST_VERSION as SCHEMA_VERSION
except ImportError as _exc:
    # A core-only install (no postgres extra), or a psycopg that cannot load
    # (no libpq). The package must still import: its URL-scheme plugin is
    # loaded through the entry point with the core, and answers postgresql://
    # URLs with what to install. Only using one of the names below fails,
    # with the same advice. A missing module of anyone else's is a real bug.
    if isinstance(_exc, ModuleNotFoundError) and _exc.name not in {"psycopg", "psycopg_pool"}:
        raise
    _MISSING = str(_exc)

    if not _typing.TYPE_CHECKING:

        def __getattr__(name: str) -> object:
            if name in __all__:
                raise ImportError(
                    f"taskmaster_postgres.{name} needs the postgres extra: "
                    f"pip install 'taskmaster-jobs[postgres]' ({_MISSING})"
                )
            raise AttributeError(f"module 'taskmaster_postgres' has no attribute {name!r}")


__all__ = ["SCHEMA_VERSION", "PostgresBroker"]
