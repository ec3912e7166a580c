"""Optional integrations, each a pluggy plugin, off until enabled.

- :mod:`taskmaster_core.contrib.prometheus` — Prometheus metrics (``taskmaster[prometheus]``)
- :mod:`taskmaster_core.contrib.opentelemetry` — tracing from put to handler
  (``taskmaster[opentelemetry]``)

Installing the library does not turn one on (instrumentation costs time on
every job, so it is a choice): enable them for every consumer and publisher
with ``TASKMASTER_PLUGINS=prometheus,opentelemetry``, ``taskmaster worker
--plugin prometheus``, or ``taskmaster_core.enable_plugins(["prometheus"])``
before building consumers — or pass ``PrometheusMiddleware()`` /
``TracingMiddleware()`` as explicit middleware.
"""
