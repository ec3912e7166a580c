"""Hook specifications: what a Taskmaster plugin can contribute.

A plugin is a module or object with functions marked ``@hookimpl``, installed
under the ``taskmaster`` entry-point group (or registered by hand on the
plugin manager). See docs/plugins.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from ._broker import Broker
    from ._middleware import Middleware
    from ._serializers import Serializer

PROJECT = "taskmaster"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def taskmaster_serializers() -> list[Serializer]:  # type: ignore[empty-body]
    """Return serializers to register (each with a unique ``name``)."""


@hookspec
def taskmaster_middleware() -> list[Middleware]:  # type: ignore[empty-body]
    """Return middleware to add to every consumer and publisher that uses plugins.

    Plugin middleware wraps outside the middleware passed explicitly."""


@hookspec(firstresult=True)
def taskmaster_broker_from_url(url: str, options: dict[str, Any]) -> Broker | None:
    """Return a (not yet opened) broker for ``url`` if this plugin handles its
    scheme, else ``None``. ``options`` are keyword settings for the broker."""
