"""A PostgreSQL server of the test's own, from the pgserver binaries the
suite uses on a fresh machine — for what must never be done to the shared
server: restarting it, changing its authentication."""

from __future__ import annotations

import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.pg_fixtures import postgres_unavailable


@contextmanager
def own_server() -> Iterator[Any]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pgserver.postgres_server import get_server
    except ImportError as exc:
        postgres_unavailable(f"a server of the test's own needs pgserver ({exc})")
    datadir = tempfile.mkdtemp(prefix="taskmaster-chaos-")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = get_server(datadir, cleanup_mode="delete")
    try:
        yield server
    finally:
        server.cleanup()
        shutil.rmtree(datadir, ignore_errors=True)


def pg_ctl(server: Any, *args: str) -> None:
    import pgserver

    pgserver.pg_ctl(  # type: ignore[attr-defined]  # generated at import time
        list(args), pgdata=server.pgdata, user=server.system_user
    )


def restart(server: Any) -> None:
    """``pg_ctl restart -m fast``: every session is cut, running transactions abort."""
    socket_dir = server.get_postmaster_info().socket_dir
    pg_ctl(
        server, "-w", "-m", "fast", "restart", "-o", f"-h '' -k {socket_dir}", "-l", str(server.log)
    )
