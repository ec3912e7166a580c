"""The plugin manager and typed access to what plugins contribute.

``get_plugin_manager()`` builds the process-wide manager once: hook specs,
built-ins, then everything installed under the ``taskmaster`` entry-point
group. Hook results are ``Any`` to pluggy; the functions here validate them so
a broken plugin fails with a message naming it instead of deep in a worker.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import os
import re
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pluggy

from . import _hookspecs
from ._errors import ConfigurationError, UnknownSerializerError
from ._hookspecs import PROJECT, hookimpl
from ._serializers import JsonSerializer, MsgpackSerializer, Serializer

if TYPE_CHECKING:
    from ._broker import Broker
    from ._middleware import Middleware

_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('[^']*'|\S+)")

DISABLE_ENV = "TASKMASTER_DISABLE_PLUGINS"
"""Comma-separated entry-point names of installed plugins not to load."""
ENABLE_ENV = "TASKMASTER_PLUGINS"
"""Comma-separated plugins to load besides the installed ones: a built-in
name (``prometheus``, ``opentelemetry``) or a module path."""
BUILTIN_OPTIONAL = {
    "prometheus": "taskmaster_core.contrib.prometheus",
    "opentelemetry": "taskmaster_core.contrib.opentelemetry",
}

__all__ = [
    "SerializerRegistry",
    "enable_plugins",
    "get_plugin_manager",
    "new_plugin_manager",
    "open_broker",
    "plugin_middleware",
]


class _BuiltinSerializers:
    """The serializers that ship with core, registered like any plugin."""

    @hookimpl
    def taskmaster_serializers(self) -> list[Serializer]:
        return [JsonSerializer(), MsgpackSerializer()]


def new_plugin_manager(*, load_entrypoints: bool = True) -> pluggy.PluginManager:
    """A fresh manager with specs and built-ins (and installed plugins, by default)."""
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(_hookspecs)
    pm.register(_BuiltinSerializers(), name="taskmaster.serializers")
    if load_entrypoints:
        for name in os.environ.get(DISABLE_ENV, "").split(","):
            if name.strip():
                pm.set_blocked(name.strip())
        _load_entry_points(pm)
        enable_plugins(os.environ.get(ENABLE_ENV, "").split(","), pm)
    pm.check_pending()
    return pm


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    """Load the installed ``taskmaster`` entry points. pluggy lets the
    exception of one that fails to load through with no word of which plugin
    it came from; then they are loaded again one by one, to name it."""
    try:
        pm.load_setuptools_entrypoints(PROJECT)
    except Exception as first:
        for entry_point in importlib.metadata.entry_points(group=PROJECT):
            name = entry_point.name
            if pm.is_blocked(name) or pm.get_plugin(name) is not None:
                continue
            try:
                pm.load_setuptools_entrypoints(PROJECT, name=name)
            except Exception as exc:
                dist = entry_point.dist
                origin = f" from {dist.name} {dist.version}" if dist is not None else ""
                raise ConfigurationError(
                    f"cannot load the installed Taskmaster plugin {name!r} "
                    f"({entry_point.value}{origin}): {type(exc).__name__}: {exc}; "
                    f"uninstall it, or set {DISABLE_ENV}={name} to skip it"
                ) from exc
        raise ConfigurationError(  # it failed once only: name the error, at least
            f"cannot load the installed Taskmaster plugins: {type(first).__name__}: {first}"
        ) from first


def enable_plugins(names: Iterable[str], pm: pluggy.PluginManager | None = None) -> None:
    """Register plugins by name: ``prometheus``, ``opentelemetry`` (the
    optional built-ins, off until enabled) or any importable module path.
    Enabling one twice is harmless. Raises ``ConfigurationError`` for a module
    that cannot be imported, and for a built-in whose library is missing
    (naming what to install)."""
    pm = pm if pm is not None else get_plugin_manager()
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        path = BUILTIN_OPTIONAL.get(name, name)
        try:
            module = importlib.import_module(path)
        except ImportError as exc:
            raise ConfigurationError(f"cannot load Taskmaster plugin {name!r}: {exc}") from exc
        if name in BUILTIN_OPTIONAL:
            # It imports without its library; asked for by name, it must not
            # then do nothing: say what to install.
            module.require(f"plugin {name!r}")
        if not pm.is_registered(module):
            pm.register(module, name=name)


_manager: pluggy.PluginManager | None = None
_manager_lock = threading.Lock()


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, built on first use."""
    global _manager
    if _manager is None:
        with _manager_lock:
            if _manager is None:
                _manager = new_plugin_manager()
    return _manager


class SerializerRegistry:
    """Serializers by name, as contributed by the plugins of one manager."""

    def __init__(self, pm: pluggy.PluginManager | None = None) -> None:
        pm = pm if pm is not None else get_plugin_manager()
        self._by_name: dict[str, Serializer] = {}
        for contributed in pm.hook.taskmaster_serializers():
            for serializer in _as_list(contributed, "taskmaster_serializers"):
                if not isinstance(serializer, Serializer):
                    raise ConfigurationError(
                        f"taskmaster_serializers returned {serializer!r}, which is not a "
                        "Serializer (needs name, dumps and loads)"
                    )
                name = serializer.name
                if not isinstance(name, str) or not name:
                    raise ConfigurationError(f"serializer {serializer!r} has no name")
                # pluggy calls the last registered plugin first; the first
                # registration of a name wins so plugins cannot shadow each other
                # silently depending on load order.
                if name in self._by_name and self._by_name[name] is not serializer:
                    raise ConfigurationError(f"two plugins register a serializer named {name!r}")
                self._by_name[name] = serializer

    def get(self, name: str) -> Serializer:
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownSerializerError(name, sorted(self._by_name)) from None

    def names(self) -> list[str]:
        return sorted(self._by_name)


def resolve_plugin_manager(plugins: bool | pluggy.PluginManager) -> pluggy.PluginManager:
    """``True``: the process-wide manager (installed plugins); ``False``: only
    the built-ins; or a given manager."""
    if plugins is True:
        return get_plugin_manager()
    if plugins is False:
        return _builtins_only()
    if isinstance(plugins, pluggy.PluginManager):
        return plugins
    raise ConfigurationError(f"plugins must be True, False or a PluginManager, got {plugins!r}")


_builtins: pluggy.PluginManager | None = None


def _builtins_only() -> pluggy.PluginManager:
    global _builtins
    if _builtins is None:
        _builtins = new_plugin_manager(load_entrypoints=False)
    return _builtins


def plugin_middleware(pm: pluggy.PluginManager | None = None) -> list[Middleware]:
    """Middleware contributed by installed plugins, outermost first."""
    from ._middleware import PLUGIN_ATTRIBUTE, is_middleware_like

    pm = pm if pm is not None else get_plugin_manager()
    found: list[Middleware] = []
    # In registration order (pluggy calls them last-registered first), each
    # implementation on its own, so its middleware can be tagged with the
    # plugin's name for messages.
    for implementation in pm.hook.taskmaster_middleware.get_hookimpls():
        contributed = implementation.function()
        for middleware in _as_list(contributed, "taskmaster_middleware"):
            if not is_middleware_like(middleware):
                raise ConfigurationError(
                    f"taskmaster_middleware returned {middleware!r}, which has neither a "
                    "process() nor a publish() method"
                )
            with contextlib.suppress(AttributeError, TypeError):
                setattr(middleware, PLUGIN_ATTRIBUTE, implementation.plugin_name)
            found.append(middleware)
    return found


def open_broker(
    url: str,
    *,
    pm: pluggy.PluginManager | None = None,
    **options: Any,
) -> Broker:
    """Build (not open) the broker for ``url``: ``memory://``, ``postgresql://…``,
    or any scheme a plugin handles. Raises ``ConfigurationError`` for a URL no
    plugin understands."""
    from ._broker import Broker

    if not isinstance(url, str) or not url.strip():
        raise ConfigurationError(f"broker URL must be a non-empty string, got {url!r}")
    try:
        urlsplit(url)
    except ValueError as exc:  # e.g. "Invalid IPv6 URL"; the URL may hold a password
        raise ConfigurationError(
            f"broker URL is malformed ({exc}); expected e.g. memory:// or postgresql://host/db"
        ) from None
    pm = pm if pm is not None else get_plugin_manager()
    broker = pm.hook.taskmaster_broker_from_url(url=url, options=dict(options))
    if broker is None:
        if "://" not in url:
            raise ConfigurationError(
                f"broker URL {_redact(url)!r} is not a URL; "
                "expected e.g. memory:// or postgresql://host/db"
            )
        raise ConfigurationError(
            f"no installed plugin handles broker URLs with scheme {urlsplit(url).scheme!r} "
            f"({_redact(url)})"
        )
    if not isinstance(broker, Broker):
        raise ConfigurationError(f"plugin returned {broker!r} for {_redact(url)}, not a Broker")
    return broker


def _as_list(value: Any, hook: str) -> list[Any]:
    if isinstance(value, list | tuple):
        return list(value)
    raise ConfigurationError(f"a {hook} hook returned {value!r}; it must return a list")


def _redact(url: str) -> str:
    """The URL without its password, for error messages."""
    if "://" not in url:
        return _KEYWORD_PASSWORD.sub(r"\1***", url)
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
