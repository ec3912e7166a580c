"""``python -m benchmarks profile``: the Taskmaster burn-down under cProfile.

cProfile only sees the thread it was enabled in, and the consumer works on
threads, so every thread started during the run gets its own profiler; the
stats are merged at the end."""

from __future__ import annotations

import cProfile
import io
import pstats
import threading
from collections.abc import Callable
from typing import Any

from ._common import create_database, drop_database
from ._taskmaster import HandlerKind, TaskmasterSystem


def _profile_threads(profiles: list[cProfile.Profile]) -> Callable[[], None]:
    original = threading.Thread.run

    def run(self: threading.Thread) -> None:
        profile = cProfile.Profile()
        profiles.append(profile)
        profile.enable()
        try:
            original(self)
        finally:
            profile.disable()

    threading.Thread.run = run  # type: ignore[method-assign]

    def restore() -> None:
        threading.Thread.run = original  # type: ignore[method-assign]

    return restore


def run_profile(
    admin_dsn: str, jobs: int, concurrency: int, top: int = 25, kind: HandlerKind = "sync"
) -> str:
    name = "bench_profile"
    dsn = create_database(admin_dsn, name)
    system = TaskmasterSystem(dsn)
    try:
        system.setup()
        system.fill(2_000)
        system.burn(2_000, concurrency, 60, kind=kind)  # warm-up, unprofiled
        system.reset()
        system.fill(jobs)
        profiles: list[cProfile.Profile] = []
        restore = _profile_threads(profiles)
        main = cProfile.Profile()
        try:
            main.enable()
            out: dict[str, Any] = system.burn(jobs, concurrency, 600, kind=kind)
            main.disable()
        finally:
            restore()
    finally:
        system.close()
        drop_database(admin_dsn, name)
    rate = out["processed"] / out["seconds"]
    stats = pstats.Stats(main)
    for profile in profiles:
        stats.add(profile)
    buf = io.StringIO()
    buf.write(
        f"Taskmaster burn-down under cProfile ({kind} handler): {jobs:,} jobs, "
        f"concurrency {concurrency}, "
        f"{rate:,.0f} jobs/s (profiling overhead included; {len(profiles)} threads profiled)\n"
    )
    stats.stream = buf  # type: ignore[attr-defined]
    buf.write(f"\n=== top {top} by cumulative time (all threads merged) ===\n")
    stats.sort_stats("cumulative").print_stats(top)
    buf.write(f"\n=== top {top} by total (own) time (all threads merged) ===\n")
    stats.sort_stats("tottime").print_stats(top)
    return buf.getvalue()
