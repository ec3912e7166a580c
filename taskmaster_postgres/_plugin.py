"""Registers the ``postgresql://`` and ``postgres://`` URL schemes.

Besides libpq's own parameters, a URL may carry broker settings in its query
string, so that the command line can reach any table:
``postgresql://host/app?schema=jobs&table=email_jobs&keep_done=true&listen=false``.
They are taken out before the URL reaches libpq.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from taskmaster_core import Broker, ConfigurationError, hookimpl

_TEXT_OPTIONS = ("schema", "table")
_FLAG_OPTIONS = ("keep_done", "listen")
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


@hookimpl
def taskmaster_broker_from_url(url: str, options: dict[str, Any]) -> Broker | None:
    if "://" in url:
        if urlsplit(url).scheme not in {"postgresql", "postgres"}:
            return None
        url, from_url = broker_options(url)
        options = {**from_url, **options}
    elif "=" not in url:
        return None  # neither a URL nor a libpq keyword DSN ("host=... dbname=...")
    try:
        from ._broker import PostgresBroker
    except ImportError as exc:  # psycopg missing
        raise ConfigurationError(
            "postgresql:// needs the postgres extra: "
            f"pip install 'taskmaster-jobs[postgres]' ({exc})"
        ) from exc
    return PostgresBroker(url, **options)


def broker_options(url: str) -> tuple[str, dict[str, Any]]:
    """Split the broker settings out of a URL's query string."""
    parts = urlsplit(url)
    kept: list[tuple[str, str]] = []
    options: dict[str, Any] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in _TEXT_OPTIONS:
            options[key] = value
        elif key in _FLAG_OPTIONS:
            lowered = value.lower()
            if lowered not in _TRUE | _FALSE:
                raise ConfigurationError(f"URL option {key}={value!r} must be true or false")
            options[key] = lowered in _TRUE
        else:
            kept.append((key, value))
    if not options:
        return url, options
    # Rebuilt by hand: urlunsplit would turn "postgresql:///db" into "postgresql:/db".
    base = url.partition("?")[0]
    return (f"{base}?{urlencode(kept)}" if kept else base), options
