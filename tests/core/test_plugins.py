from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pluggy
import pytest

from taskmaster_core import (
    ACK,
    ConfigurationError,
    Consumer,
    Job,
    Middleware,
    Publisher,
    SerializerRegistry,
    get_plugin_manager,
    hookimpl,
    new_plugin_manager,
    open_broker,
)
from taskmaster_memory import MemoryBroker
from tests.waiting import wait_until


class ReversedJson:
    """A toy third-party serializer: JSON text, stored backwards."""

    name = "reversed-json"

    def dumps(self, obj: Any) -> bytes:
        import json

        return json.dumps(obj).encode()[::-1]

    def loads(self, data: bytes, type: Any = None) -> Any:
        import json

        return json.loads(data[::-1])


class SerializerPlugin:
    @hookimpl
    def taskmaster_serializers(self) -> list[Any]:
        return [ReversedJson()]


def plugin_manager(*plugins: object) -> pluggy.PluginManager:
    pm = new_plugin_manager(load_entrypoints=False)
    for plugin in plugins:
        pm.register(plugin)
    return pm


def test_a_plugin_serializer_is_used_by_publisher_and_consumer() -> None:
    pm = plugin_manager(SerializerPlugin())
    with MemoryBroker() as broker:
        publisher = Publisher(broker, serializer="reversed-json", plugins=pm)
        job_id = publisher.put("q", {"a": 1})
        assert job_id is not None
        (stored,) = broker.jobs(ids=[job_id])
        assert stored.serializer == "reversed-json"
        assert stored.payload == b'{"a": 1}'[::-1]
        got: list[Any] = []
        with Consumer(broker, "q", lambda job: got.append(job.payload) or ACK, plugins=pm):
            wait_until(lambda: bool(got))
        assert got == [{"a": 1}]


def test_a_broken_serializer_plugin_is_named_in_the_error() -> None:
    class Broken:
        @hookimpl
        def taskmaster_serializers(self) -> list[Any]:
            return [object()]

    with pytest.raises(ConfigurationError, match="not a Serializer"):
        SerializerRegistry(plugin_manager(Broken()))


def test_two_plugins_may_not_claim_the_same_serializer_name() -> None:
    class Again:
        @hookimpl
        def taskmaster_serializers(self) -> list[Any]:
            return [ReversedJson()]

    with pytest.raises(ConfigurationError, match="reversed-json"):
        SerializerRegistry(plugin_manager(SerializerPlugin(), Again()))


def test_plugin_middleware_wraps_every_consumer_outside_explicit_middleware() -> None:
    calls: list[str] = []

    class Tracer(Middleware):
        def __init__(self, name: str) -> None:
            self.name = name

        def process(self, job: Job, call_next: Any) -> Any:
            calls.append(f"{self.name}:before")
            result = call_next(job)
            calls.append(f"{self.name}:after")
            return result

        def publish(self, message: Any, call_next: Any) -> None:
            message.headers["traced-by"] = self.name
            call_next(message)

    class MiddlewarePlugin:
        @hookimpl
        def taskmaster_middleware(self) -> list[Any]:
            return [Tracer("plugin")]

    pm = plugin_manager(MiddlewarePlugin())
    headers: list[dict[str, str]] = []

    def handler(job: Job) -> Any:
        calls.append("handler")
        headers.append(job.headers)
        return ACK

    with MemoryBroker() as broker:
        Publisher(broker, plugins=pm, middleware=[Tracer("explicit")]).put("q", 1)
        with Consumer(broker, "q", handler, middleware=[Tracer("explicit")], plugins=pm):
            wait_until(lambda: len(calls) == 5)
    assert calls == [
        "plugin:before",
        "explicit:before",
        "handler",
        "explicit:after",
        "plugin:after",
    ]
    assert headers == [{"traced-by": "explicit"}]  # the inner publish layer ran last


def test_installed_entry_points_provide_the_memory_and_postgres_schemes() -> None:
    pm = get_plugin_manager()
    names = {name for name, _ in pm.list_name_plugin()}
    assert {"memory", "postgres"} <= names
    broker = open_broker("memory://")
    assert isinstance(broker, MemoryBroker)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("nonsense", "not a URL"),
        ("redis://localhost", "no installed plugin handles broker URLs with scheme 'redis'"),
        ("memory://somehost", "memory:// URLs take no host"),
    ],
)
def test_bad_broker_urls_get_a_clear_error(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        open_broker(url)


def test_a_url_error_never_shows_the_password() -> None:
    with pytest.raises(ConfigurationError) as caught:
        open_broker("weird://user:s3cret@host/db")
    assert "s3cret" not in str(caught.value)
    assert "***" in str(caught.value)


def test_a_plugin_can_add_a_url_scheme() -> None:
    class Scheme:
        @hookimpl
        def taskmaster_broker_from_url(self, url: str, options: dict[str, Any]) -> Any:
            return MemoryBroker(**options) if url.startswith("test://") else None

    broker = open_broker("test://x", pm=plugin_manager(Scheme()), keep_done=True)
    assert isinstance(broker, MemoryBroker)
    assert broker.keep_done


# -- an installed plugin that cannot be loaded -------------------------------


def install_plugin(
    site: Path, module_source: str | None, module: str = "broken_taskmaster_plugin"
) -> None:
    """A distribution ``broken-plugin`` in ``site`` whose ``taskmaster`` entry
    point ``broken`` names ``module`` (absent when ``module_source`` is None)."""
    info = site / "broken_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[taskmaster]\nbroken = {module}\n")
    if module_source is not None:
        (site / f"{module}.py").write_text(module_source)


@pytest.mark.parametrize(
    ("module_source", "error"),
    [
        (None, "ModuleNotFoundError: No module named 'broken_taskmaster_plugin'"),
        ("raise RuntimeError('no config file')\n", "RuntimeError: no config file"),
    ],
)
def test_an_installed_plugin_that_fails_to_load_is_named(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    module_source: str | None,
    error: str,
) -> None:
    install_plugin(tmp_path, module_source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("TASKMASTER_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("TASKMASTER_PLUGINS", raising=False)
    with pytest.raises(ConfigurationError) as caught:
        new_plugin_manager()
    assert str(caught.value) == (
        "cannot load the installed Taskmaster plugin 'broken' "
        f"(broken_taskmaster_plugin from broken-plugin 1.0): {error}; "
        "uninstall it, or set TASKMASTER_DISABLE_PLUGINS=broken to skip it"
    )
    monkeypatch.setenv("TASKMASTER_DISABLE_PLUGINS", "broken")  # the way out it names
    pm = new_plugin_manager()
    assert pm.is_blocked("broken") and pm.get_plugin("broken") is None
    assert pm.get_plugin("memory") is not None


def test_the_command_reports_a_broken_installed_plugin_in_one_line(tmp_path: Path) -> None:
    install_plugin(tmp_path, None)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    env.pop("TASKMASTER_DISABLE_PLUGINS", None)
    result = subprocess.run(
        [str(Path(sys.executable).with_name("taskmaster")), "--url", "memory://", "stats"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(
        "taskmaster: error: cannot load the installed Taskmaster plugin 'broken' "
    )
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_a_plugin_that_fails_to_load_only_once_is_still_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin(
        tmp_path,
        "import pathlib\n"
        "marker = pathlib.Path(__file__).with_suffix('.tried')\n"
        "if not marker.exists():\n"
        "    marker.write_text('')\n"
        "    raise RuntimeError('first import only')\n",
        module="flaky_taskmaster_plugin",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("TASKMASTER_DISABLE_PLUGINS", raising=False)
    try:
        with pytest.raises(ConfigurationError) as caught:
            new_plugin_manager()
    finally:
        sys.modules.pop("flaky_taskmaster_plugin", None)  # it loaded the second time
    assert str(caught.value) == (
        "cannot load the installed Taskmaster plugins: RuntimeError: first import only"
    )
