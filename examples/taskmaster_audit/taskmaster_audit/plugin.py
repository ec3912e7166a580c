"""The module the ``taskmaster`` entry point names: Taskmaster registers it
with its plugin manager and calls the hook for every consumer and publisher."""

from __future__ import annotations

import os

from taskmaster_core import Middleware, hookimpl

from .middleware import AUDIT_FILE_ENV, AuditMiddleware


@hookimpl
def taskmaster_middleware() -> list[Middleware]:
    path = os.environ.get(AUDIT_FILE_ENV)
    if not path:
        return []  # installed but not configured: add nothing
    return [AuditMiddleware(path)]
