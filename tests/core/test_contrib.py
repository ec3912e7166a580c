"""The Prometheus and OpenTelemetry middleware, with the real libraries."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import prometheus_client
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from taskmaster_core import (
    ACK,
    REJECT,
    ConfigurationError,
    Consumer,
    Job,
    Publisher,
    RetryPolicy,
    enable_plugins,
)
from taskmaster_core._plugins import new_plugin_manager, plugin_middleware
from taskmaster_core.contrib.opentelemetry import TracingMiddleware
from taskmaster_core.contrib.prometheus import PrometheusMiddleware
from taskmaster_memory import MemoryBroker


def handler(job: Job) -> Any:
    if job.payload == "boom":
        raise ValueError("boom")
    return ACK if job.payload == "ok" else REJECT


def test_prometheus_counts_publishes_outcomes_and_durations() -> None:
    registry = prometheus_client.CollectorRegistry()
    metrics = PrometheusMiddleware(registry=registry)
    with MemoryBroker() as broker:
        Publisher(broker, middleware=[metrics], plugins=False, max_attempts=1).put_many(
            "q", ["ok", "ok", "no", "boom"]
        )
        consumer = Consumer(broker, "q", handler, middleware=[metrics], plugins=False)
        assert consumer.drain() == 4

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("taskmaster_jobs_published_total", queue="q") == 4
    assert value("taskmaster_jobs_processed_total", queue="q", outcome="ack") == 2
    assert value("taskmaster_jobs_processed_total", queue="q", outcome="reject") == 1
    assert value("taskmaster_jobs_processed_total", queue="q", outcome="error") == 1
    assert value("taskmaster_job_duration_seconds_count", queue="q") == 4
    assert value("taskmaster_jobs_in_progress", queue="q") == 0


def test_tracing_links_the_handler_span_to_the_put(monkeypatch: pytest.MonkeyPatch) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = TracingMiddleware(tracer_provider=provider)
    tracer = provider.get_tracer("app")
    with MemoryBroker() as broker:
        publisher = Publisher(broker, middleware=[tracing], plugins=False, max_attempts=1)
        with tracer.start_as_current_span("http request"):
            job_id = publisher.put("q", "ok")
        publisher.put("q", "no")
        publisher.put("q", "boom")
        (stored, *_) = broker.jobs(ids=[job_id or 0])
        assert stored.headers is not None and "traceparent" in stored.headers
        Consumer(broker, "q", handler, middleware=[tracing], plugins=False).drain()

    spans = {
        (s.name, s.attributes.get("messaging.message.id")): s for s in exporter.get_finished_spans()
    }  # type: ignore[union-attr]
    request = next(s for s in exporter.get_finished_spans() if s.name == "http request")
    process = spans[("process q", str(job_id))]
    assert process.kind is trace.SpanKind.CONSUMER
    assert process.context.trace_id == request.context.trace_id  # type: ignore[union-attr]
    publish = next(
        s
        for s in exporter.get_finished_spans()
        if s.name == "publish q" and s.context.trace_id == request.context.trace_id  # type: ignore[union-attr]
    )
    assert process.parent is not None
    assert process.parent.span_id == publish.context.span_id  # type: ignore[union-attr]
    assert process.attributes["taskmaster.outcome"] == "ack"  # type: ignore[index]
    outcomes = {
        s.attributes["taskmaster.outcome"]: s.status.status_code  # type: ignore[index]
        for s in exporter.get_finished_spans()
        if s.name == "process q" and "taskmaster.outcome" in (s.attributes or {})
    }
    assert outcomes["reject"] is trace.StatusCode.ERROR
    failed = [s for s in exporter.get_finished_spans() if s.events and s.name == "process q"]
    assert failed and failed[0].events[0].name == "exception"


def test_both_are_off_until_enabled_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    wanted = {"PrometheusMiddleware", "TracingMiddleware"}
    monkeypatch.delenv("TASKMASTER_PLUGINS", raising=False)
    names = {type(m).__name__ for m in plugin_middleware(new_plugin_manager())}
    assert names.isdisjoint(wanted)  # installed is not enabled: they cost time per job
    monkeypatch.setenv("TASKMASTER_PLUGINS", "prometheus, opentelemetry")
    names = {type(m).__name__ for m in plugin_middleware(new_plugin_manager())}
    assert wanted <= names
    pm = new_plugin_manager(load_entrypoints=False)
    enable_plugins(["prometheus", "prometheus"], pm)  # twice is harmless
    assert [type(m).__name__ for m in plugin_middleware(pm)] == ["PrometheusMiddleware"]
    with pytest.raises(ConfigurationError, match="cannot load Taskmaster plugin 'nope'"):
        enable_plugins(["nope"], pm)


def test_a_retry_counts_as_its_own_outcome() -> None:
    registry = prometheus_client.CollectorRegistry()
    metrics = PrometheusMiddleware(registry=registry)
    with MemoryBroker() as broker:
        Publisher(broker, plugins=False, max_attempts=2).put("q", "boom")
        Consumer(
            broker,
            "q",
            handler,
            middleware=[metrics],
            plugins=False,
            retry=RetryPolicy(base_delay=0, jitter=0),
        ).drain()
    assert (
        registry.get_sample_value(
            "taskmaster_jobs_processed_total", {"queue": "q", "outcome": "error"}
        )
        == 2
    )


# -- a plugin asked for by name whose library is missing ---------------------

MISSING = [
    ("prometheus", "prometheus_client", "needs prometheus_client"),
    ("opentelemetry", "opentelemetry", "needs opentelemetry-api"),
]
TASKMASTER = Path(sys.executable).with_name("taskmaster")


def run_python(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(("plugin", "library", "needs"), MISSING)
def test_enabling_a_plugin_whose_library_is_missing_says_what_to_install(
    plugin: str, library: str, needs: str
) -> None:
    result = run_python(
        f"""
        import sys
        sys.modules[{library!r}] = None  # as if it were not installed
        from taskmaster_core import ConfigurationError, enable_plugins, new_plugin_manager
        try:
            enable_plugins([{plugin!r}], new_plugin_manager(load_entrypoints=False))
        except ConfigurationError as exc:
            print("ConfigurationError:", exc)
        else:
            print("enabled")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"ConfigurationError: plugin {plugin!r} {needs}: pip install 'taskmaster-jobs[{plugin}]'"
    )


@pytest.mark.parametrize(("plugin", "library", "needs"), MISSING)
def test_a_plugin_registered_by_hand_without_its_library_fails_when_used(
    plugin: str, library: str, needs: str
) -> None:
    result = run_python(
        f"""
        import sys
        sys.modules[{library!r}] = None
        from taskmaster_core import ConfigurationError, new_plugin_manager
        from taskmaster_core._plugins import plugin_middleware
        from taskmaster_core.contrib import {plugin} as module
        pm = new_plugin_manager(load_entrypoints=False)
        pm.register(module)
        try:
            print(plugin_middleware(pm))
        except ConfigurationError as exc:
            print("ConfigurationError:", exc)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ConfigurationError: "), result.stdout
    assert f"{needs}: pip install 'taskmaster-jobs[{plugin}]'" in result.stdout


def hide_library(tmp_path: Path, library: str, missing: str | None = None) -> dict[str, str]:
    """An environment in which importing ``library`` fails as if it were not
    installed (or, with ``missing``, as if a dependency of its own were not):
    a package of that name, first on the path, that raises so."""
    absent = missing or library
    package = tmp_path / library
    package.mkdir()
    (package / "__init__.py").write_text(
        f"raise ModuleNotFoundError({f'No module named {absent!r}'!r}, name={absent!r})\n"
    )
    return {**os.environ, "PYTHONPATH": str(tmp_path), "TASKMASTER_URL": "memory://"}


@pytest.mark.parametrize("how", ["--plugin", "TASKMASTER_PLUGINS"])
@pytest.mark.parametrize(("plugin", "library", "needs"), MISSING)
def test_the_command_stops_with_one_line_when_a_plugins_library_is_missing(
    tmp_path: Path, plugin: str, library: str, needs: str, how: str
) -> None:
    env = hide_library(tmp_path, library)
    if how == "--plugin":
        args = ["--plugin", plugin, "stats"]
    else:
        args = ["stats"]
        env["TASKMASTER_PLUGINS"] = plugin
    result = subprocess.run(
        [str(TASKMASTER), *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr == (
        f"taskmaster: error: plugin {plugin!r} {needs}: pip install 'taskmaster-jobs[{plugin}]'\n"
    )
    assert result.stdout == ""


def test_a_library_that_is_installed_but_fails_to_import_is_reported_as_such(
    tmp_path: Path,
) -> None:
    env = hide_library(tmp_path, "prometheus_client", missing="its_own_dependency")
    result = subprocess.run(
        [str(TASKMASTER), "--plugin", "prometheus", "stats"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr == (
        "taskmaster: error: plugin 'prometheus' needs prometheus_client: "
        "pip install 'taskmaster-jobs[prometheus]' (importing it failed: "
        "ModuleNotFoundError: No module named 'its_own_dependency')\n"
    )
