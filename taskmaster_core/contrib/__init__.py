"""Optional integrations, each a pluggy plugin active when its library is installed.

- :mod:`taskmaster_core.contrib.prometheus` — Prometheus metrics (``taskmaster[prometheus]``)
- :mod:`taskmaster_core.contrib.opentelemetry` — tracing from put to handler
  (``taskmaster[opentelemetry]``)

Both are registered under the ``taskmaster`` entry-point group, so every
consumer and publisher that uses plugins gets them once the library is
installed. Turn one off with ``TASKMASTER_DISABLE_PLUGINS=prometheus`` (a
comma-separated list of plugin names), or build consumers with
``plugins=False`` and pass the middleware explicitly.
"""
