"""Optional integrations, each a pluggy plugin, off until enabled.

- :mod:`taskmaster_core.contrib.prometheus` — Prometheus metrics (``taskmaster-jobs[prometheus]``)
- :mod:`taskmaster_core.contrib.opentelemetry` — tracing from put to handler
  (``taskmaster-jobs[opentelemetry]``)

Installing the library does not turn one on (instrumentation costs time on
every job, so it is a choice): enable them for every consumer and publisher
with ``TASKMASTER_PLUGINS=prometheus,opentelemetry``, ``taskmaster worker
--plugin prometheus``, or ``taskmaster_core.enable_plugins(["prometheus"])``
before building consumers — or pass ``PrometheusMiddleware()`` /
``TracingMiddleware()`` as explicit middleware.
"""

from __future__ import annotations

__all__ = ["missing_library"]

DISTRIBUTION = "taskmaster-jobs"
"""The name to ``pip install`` Taskmaster's extras under."""


def missing_library(who: str, requirement: str, module: str, extra: str, error: ImportError) -> str:
    """One line for ``who``, which needs ``requirement`` (imported as
    ``module``), after importing it raised ``error``: what to install, and the
    import error itself when the library is there but its import failed (a
    broken install, a missing dependency of its own)."""
    message = f"{who} needs {requirement}: pip install '{DISTRIBUTION}[{extra}]'"
    top = (error.name or "").partition(".")[0]
    if isinstance(error, ModuleNotFoundError) and top == module:
        return message
    return f"{message} (importing it failed: {type(error).__name__}: {error})"
