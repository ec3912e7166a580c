"""Registers the ``postgresql://`` and ``postgres://`` URL schemes."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from taskmaster_core import Broker, ConfigurationError, hookimpl


@hookimpl
def taskmaster_broker_from_url(url: str, options: dict[str, Any]) -> Broker | None:
    if "://" in url:
        if urlsplit(url).scheme not in {"postgresql", "postgres"}:
            return None
    elif "=" not in url:
        return None  # neither a URL nor a libpq keyword DSN ("host=... dbname=...")
    try:
        from ._broker import PostgresBroker
    except ImportError as exc:  # psycopg missing
        raise ConfigurationError(
            f"postgresql:// needs the postgres extra: pip install 'taskmaster[postgres]' ({exc})"
        ) from exc
    return PostgresBroker(url, **options)
