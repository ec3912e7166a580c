"""Runs the rows of issue 6 (and issue 11's async rows) for every selected system,
side by side."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ._common import (
    BenchError,
    create_database,
    drop_database,
    execute,
    percentile,
    summarize,
)
from ._taskmaster import TABLE, TaskmasterSystem, fill_sql, memory_burn

ALL_SYSTEMS = ("taskmaster", "procrastinate", "pgqueuer")
ALL_ROWS = (
    "put_one",
    "put_many",
    "burn",
    "burn_async",
    "latency",
    "latency_async",
    "mixed",
    "memory",
    "backlog",
    "rss",
    "rawsql",
    "io",
)
ASYNC_ROWS = ("burn_async", "latency_async", "io")
"""Rows that run a Taskmaster consumer with an ``async def`` handler."""


@dataclass
class Config:
    repeat: int = 3
    put_one: int = 5_000
    put_many: int = 100_000
    put_many_batch: int = 10_000
    burn_taskmaster: int = 100_000
    burn_peer: int = 20_000
    burn_cap_taskmaster: float = 40.0
    burn_cap_peer: float = 6.0
    concurrencies: tuple[int, ...] = (1, 4, 8, 16, 32)
    latency_jobs: int = 500
    latency_interval: float = 0.010
    latency_concurrency: int = 4
    mixed_seconds: float = 10.0
    mixed_concurrency: int = 8
    memory_jobs: int = 100_000
    memory_concurrencies: tuple[int, ...] = (1, 8)
    backlog_measure: int = 20_000
    backlog_small: int = 10_000
    backlog_large: int = 1_000_000
    backlog_failed: int = 100_000
    backlog_concurrency: int = 8
    rss_small: int = 100_000
    rss_large: int = 1_000_000
    rss_concurrency: int = 8
    pgbench_seconds: int = 5
    pgbench_prefill: int = 1_000_000
    io_jobs: int = 10_000
    io_concurrency: int = 1_000
    io_sleep: float = 0.1
    io_cap: float = 120.0

    @classmethod
    def quick(cls) -> Config:
        return cls(
            repeat=1,
            put_one=500,
            put_many=20_000,
            put_many_batch=5_000,
            burn_taskmaster=10_000,
            burn_peer=2_000,
            burn_cap_taskmaster=30.0,
            burn_cap_peer=2.0,
            concurrencies=(1, 8, 32),
            latency_jobs=100,
            mixed_seconds=2.0,
            memory_jobs=10_000,
            backlog_measure=2_000,
            backlog_small=1_000,
            backlog_large=50_000,
            backlog_failed=10_000,
            rss_small=10_000,
            rss_large=50_000,
            pgbench_seconds=1,
            pgbench_prefill=200_000,
            io_jobs=2_000,
            io_cap=60.0,
        )


def log(message: str) -> None:
    print(message, flush=True)


def load_systems(names: list[str], dsns: dict[str, str]) -> dict[str, Any]:
    systems: dict[str, Any] = {}
    for name in names:
        if name == "taskmaster":
            systems[name] = TaskmasterSystem(dsns[name])
            continue
        try:
            if name == "procrastinate":
                from ._procrastinate import ProcrastinateSystem as cls
            else:
                from ._pgqueuer import PgQueuerSystem as cls  # type: ignore[assignment]
        except ImportError as exc:
            log(
                f"SKIPPED {name}: not installed ({exc.name or exc}); "
                "install the bench extra: pip install -e '.[bench]'"
            )
            continue
        systems[name] = cls(dsns[name])
    return systems


def machine_info(admin_dsn: str) -> dict[str, Any]:
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    pg = execute(admin_dsn, "SHOW server_version")[0][0]
    settings = {
        name: execute(admin_dsn, f"SHOW {name}")[0][0]
        for name in ("shared_buffers", "synchronous_commit", "fsync", "max_connections")
    }
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            [
                "git",
                "-C",
                str(root),
                "status",
                "--porcelain",
                "--",
                "taskmaster_core",
                "taskmaster_postgres",
                "taskmaster_memory",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = "unknown", ""
    versions = {}
    for dist in ("procrastinate", "pgqueuer", "psycopg", "asyncpg", "msgspec"):
        try:
            from importlib.metadata import version

            versions[dist] = version(dist)
        except Exception:  # noqa: S112 - absent peers are reported as such
            continue
    return {
        "nproc": os.cpu_count(),
        "loadavg_start": _loadavg(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "cpu": _cpu_model(),
        "postgres": pg,
        "postgres_settings": settings,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "taskmaster_commit": commit + (" (+ uncommitted library changes)" if dirty else ""),
        "versions": versions,
    }


def _loadavg() -> list[float]:
    """1, 5 and 15-minute load averages: on a 2-core box, anything well above
    0 before or after a run means something else shared the CPUs."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


class Runner:
    def __init__(self, admin_dsn: str, config: Config, systems: list[str], rows: list[str]):
        self.admin_dsn = admin_dsn
        self.config = config
        self.system_names = systems
        self.rows = rows
        self.results: dict[str, dict[str, Any]] = {}
        self.samples: dict[str, Any] = {
            "latency": {},
            "latency_async": {},
            "mixed": {},
            "burn": {},
            "burn_async": {},
        }
        self.notes: list[str] = []
        self.databases: dict[str, str] = {}
        tag = f"{os.getpid()}"
        self.db_names = {name: f"bench_{name}_{tag}" for name in (*ALL_SYSTEMS, "rawsql")}

    # -- bookkeeping --------------------------------------------------------------

    def put(self, row: str, system: str, values: list[float], **extra: Any) -> None:
        entry = summarize(values)
        entry.update(extra)
        self.results.setdefault(row, {})[system] = entry

    def run(self) -> dict[str, Any]:
        cfg = self.config
        started = time.perf_counter()
        info = machine_info(self.admin_dsn)
        log(
            f"machine: {info['nproc']} CPUs, {info['memory_gib']} GiB, PostgreSQL "
            f"{info['postgres']}, Python {info['python']}; taskmaster {info['taskmaster_commit']}; "
            f"load average {info['loadavg_start']}"
        )
        dsns = {}
        needed = [s for s in self.system_names]
        if "rawsql" in self.rows:
            needed.append("rawsql")
        for name in needed:
            dsns[name] = create_database(self.admin_dsn, self.db_names[name])
            self.databases[name] = self.db_names[name]
        systems: dict[str, Any] = {}
        try:
            systems = load_systems(self.system_names, dsns)
            for name, system in systems.items():
                system.setup()
                log(f"{system.label}: {system.settings}")
                self._warm_up(name, system)
            self._run_rows(systems, dsns)
        finally:
            for system in systems.values():
                try:
                    system.close()
                except Exception as exc:
                    log(f"closing {system.name} failed: {exc!r}")
            for name in self.databases.values():
                drop_database(self.admin_dsn, name)
        return {
            "machine": info,
            "config": asdict(cfg),
            "systems": {
                name: {
                    "label": s.label,
                    "settings": s.settings,
                    **({"io_settings": s.io_settings} if "io" in self.rows else {}),
                }
                for name, s in systems.items()
            },
            "skipped": [s for s in self.system_names if s not in systems],
            "results": self.results,
            "samples": self.samples,
            "notes": self.notes,
            "seconds": time.perf_counter() - started,
            "loadavg_end": _loadavg(),
        }

    def _warm_up(self, name: str, system: Any) -> None:
        system.reset()
        system.put_one(200)
        system.put_many(2_000, 1_000)
        system.reset()
        system.fill(2_000)
        system.burn(2_000, 8, 30)
        system.latency(20, 0.005, 4)
        if name == "taskmaster" and any(row in self.rows for row in ASYNC_ROWS):
            system.reset()
            system.fill(2_000)
            system.burn(2_000, 8, 30, kind="async")
            system.latency(20, 0.005, 4, kind="async")
        system.reset()
        log(f"{name}: warmed up")

    def _run_rows(self, systems: dict[str, Any], dsns: dict[str, str]) -> None:
        cfg = self.config
        if "put_one" in self.rows:
            self._row_put_one(systems)
        if "put_many" in self.rows:
            self._row_put_many(systems)
        # The async rows are Taskmaster's own and are measured beside its sync
        # row, repeat by repeat: asking for one runs Taskmaster's sync row too.
        tm_only = {k: v for k, v in systems.items() if k == "taskmaster"}
        if "burn" in self.rows or ("burn_async" in self.rows and tm_only):
            self._row_burn(
                systems if "burn" in self.rows else tm_only,
                with_async="burn_async" in self.rows and bool(tm_only),
            )
        if "latency" in self.rows or ("latency_async" in self.rows and tm_only):
            self._row_latency(
                systems if "latency" in self.rows else tm_only,
                with_async="latency_async" in self.rows and bool(tm_only),
            )
        if "mixed" in self.rows:
            self._row_mixed(systems)
        if "io" in self.rows:
            self._row_io(systems)
        tm = systems.get("taskmaster")
        if "memory" in self.rows and "taskmaster" in self.system_names:
            self._row_memory()
        if "backlog" in self.rows and tm is not None:
            self._row_backlog(tm)
        if "rss" in self.rows and tm is not None:
            self._row_rss(tm)
        if "rawsql" in self.rows:
            from ._rawsql import run_pgbench

            log("raw SQL ceiling (pgbench, 1 client, -M prepared):")
            raw = run_pgbench(
                dsns["rawsql"], cfg.repeat, cfg.pgbench_seconds, cfg.pgbench_prefill, log
            )
            for key, entry in raw.items():
                self.results.setdefault(f"raw_{key}", {})["rawsql"] = entry

    # -- rows ---------------------------------------------------------------------

    def _row_put_one(self, systems: dict[str, Any]) -> None:
        n = self.config.put_one
        log(f"row 1: put one job per call ({n:,} jobs)")
        values: dict[str, list[float]] = {s: [] for s in systems}
        for _ in range(self.config.repeat):
            for name, system in systems.items():
                system.reset()
                seconds = system.put_one(n)
                stored = system.queued()
                if stored != n:
                    raise BenchError(f"{name} put_one: {stored} jobs stored for {n} puts")
                values[name].append(n / seconds)
        for name, vals in values.items():
            self.put("put_one", name, vals)
            log(f"  {name:<14} {self.results['put_one'][name]['median']:>10,.0f} jobs/s")

    def _row_put_many(self, systems: dict[str, Any]) -> None:
        n, batch = self.config.put_many, self.config.put_many_batch
        log(f"row 2: put many ({n:,} jobs in batches of {batch:,})")
        values: dict[str, list[float]] = {s: [] for s in systems}
        for _ in range(self.config.repeat):
            for name, system in systems.items():
                system.reset()
                seconds = system.put_many(n, batch)
                stored = system.queued()
                if stored != n:
                    raise BenchError(f"{name} put_many: {stored} jobs stored for {n} puts")
                values[name].append(n / seconds)
        for name, vals in values.items():
            self.put("put_many", name, vals)
            log(f"  {name:<14} {self.results['put_many'][name]['median']:>10,.0f} jobs/s")

    def _row_burn(self, systems: dict[str, Any], with_async: bool = False) -> None:
        cfg = self.config
        log(
            f"row 3: burn-down of a pre-filled queue (Taskmaster {cfg.burn_taskmaster:,} jobs; "
            f"peers {cfg.burn_peer:,} jobs, capped at {cfg.burn_cap_peer:g} s)"
            + ("; Taskmaster with an async handler right after its sync run" if with_async else "")
        )
        async_values: dict[int, list[float]] = {}
        async_capped: dict[int, int] = {}
        for conc in cfg.concurrencies:
            values: dict[str, list[float]] = {s: [] for s in systems}
            capped: dict[str, int] = {s: 0 for s in systems}
            async_values[conc], async_capped[conc] = [], 0
            for _ in range(cfg.repeat):
                for name, system in systems.items():
                    tm = name == "taskmaster"
                    count = cfg.burn_taskmaster if tm else cfg.burn_peer
                    cap = cfg.burn_cap_taskmaster if tm else cfg.burn_cap_peer
                    system.reset()
                    system.fill(count)
                    out = system.burn(count, conc, cap)
                    values[name].append(out["processed"] / out["seconds"])
                    capped[name] += bool(out["capped"])
                    if tm and with_async:  # same repeat, same state, async handler
                        system.reset()
                        system.fill(count)
                        out = system.burn(count, conc, cap, kind="async")
                        async_values[conc].append(out["processed"] / out["seconds"])
                        async_capped[conc] += bool(out["capped"])
            parts = []
            for name, vals in values.items():
                note = f"{capped[name]}/{cfg.repeat} runs stopped at the time cap"
                self.put(f"burn_c{conc}", name, vals, capped=capped[name], note=note)
                parts.append(f"{name} {self.results[f'burn_c{conc}'][name]['median']:,.0f}")
                self.samples["burn"].setdefault(name, {})[conc] = self.results[f"burn_c{conc}"][
                    name
                ]
            if with_async:
                sync_vals = values["taskmaster"]
                self.put(
                    f"burn_async_c{conc}",
                    "taskmaster",
                    async_values[conc],
                    capped=async_capped[conc],
                )
                self.samples["burn_async"].setdefault("taskmaster", {})[conc] = self.results[
                    f"burn_async_c{conc}"
                ]["taskmaster"]
                # Paired: each async run over the sync run of the same repeat.
                paired = [a / b for a, b in zip(async_values[conc], sync_vals, strict=True)]
                self.put(f"burn_async_ratio_c{conc}", "taskmaster", paired)
                parts.append(
                    f"taskmaster async "
                    f"{self.results[f'burn_async_c{conc}']['taskmaster']['median']:,.0f} "
                    f"(async/sync {summarize(paired)['median']:.2f})"
                )
            log(f"  c={conc:<3} " + ", ".join(parts) + " jobs/s")
        for name in systems:
            best = max(cfg.concurrencies, key=lambda c: self.results[f"burn_c{c}"][name]["median"])
            entry = dict(self.results[f"burn_c{best}"][name])
            entry["concurrency"] = best
            self.results.setdefault("burn_best", {})[name] = entry
            log(f"  best {name}: {entry['median']:,.0f} jobs/s at concurrency {best}")
        if with_async:
            best = max(
                cfg.concurrencies,
                key=lambda c: self.results[f"burn_async_c{c}"]["taskmaster"]["median"],
            )
            entry = dict(self.results[f"burn_async_c{best}"]["taskmaster"])
            entry["concurrency"] = best
            self.results.setdefault("burn_async_best", {})["taskmaster"] = entry
            sync_best = self.results["burn_best"]["taskmaster"]
            share = entry["median"] / sync_best["median"]
            self.put(
                "burn_async_ratio_best",
                "taskmaster",
                [share],
                note="median of the best async concurrency over median of the best sync one",
            )
            log(
                f"  best taskmaster async: {entry['median']:,.0f} jobs/s at concurrency {best}; "
                f"async best / sync best {share:.2f} (target >= 0.80)"
            )

    def _row_latency(self, systems: dict[str, Any], with_async: bool = False) -> None:
        cfg = self.config
        log(
            f"row 4: put -> handler start, idle consumer (concurrency {cfg.latency_concurrency}), "
            f"{cfg.latency_jobs} jobs {cfg.latency_interval * 1000:g} ms apart"
            + ("; Taskmaster with an async handler right after its sync run" if with_async else "")
        )
        per: dict[str, dict[str, list[float]]] = {
            s: {"p50": [], "p90": [], "p99": []} for s in systems
        }
        per_async: dict[str, list[float]] = {"p50": [], "p90": [], "p99": []}
        for _ in range(cfg.repeat):
            for name, system in systems.items():
                system.reset()
                lat = system.latency(
                    cfg.latency_jobs, cfg.latency_interval, cfg.latency_concurrency
                )
                self.samples["latency"].setdefault(name, []).extend(lat)
                for p in (50, 90, 99):
                    per[name][f"p{p}"].append(percentile(lat, p))
                if name == "taskmaster" and with_async:
                    system.reset()
                    lat = system.latency(
                        cfg.latency_jobs,
                        cfg.latency_interval,
                        cfg.latency_concurrency,
                        kind="async",
                    )
                    self.samples["latency_async"].setdefault(name, []).extend(lat)
                    for p in (50, 90, 99):
                        per_async[f"p{p}"].append(percentile(lat, p))
        for name, by_p in per.items():
            for key, vals in by_p.items():
                self.put(f"latency_{key}", name, vals)
            log(
                f"  {name:<14} p50 {self.results['latency_p50'][name]['median']:.2f} ms, "
                f"p90 {self.results['latency_p90'][name]['median']:.2f} ms, "
                f"p99 {self.results['latency_p99'][name]['median']:.2f} ms"
            )
        if with_async:
            for key, vals in per_async.items():
                self.put(f"latency_async_{key}", "taskmaster", vals)
            log(
                f"  {'taskmaster async':<14} "
                f"p50 {self.results['latency_async_p50']['taskmaster']['median']:.2f} ms, "
                f"p90 {self.results['latency_async_p90']['taskmaster']['median']:.2f} ms, "
                f"p99 {self.results['latency_async_p99']['taskmaster']['median']:.2f} ms "
                "(targets p50 <= 2 ms, p99 <= 5 ms)"
            )

    def _row_io(self, systems: dict[str, Any]) -> None:
        cfg = self.config
        n, conc = cfg.io_jobs, cfg.io_concurrency
        log(
            f"row 10: I/O-bound, {n:,} pre-filled jobs whose async handler awaits "
            f"asyncio.sleep({cfg.io_sleep:g}), concurrency {conc:,} "
            f"(ideal {n / conc * cfg.io_sleep:.1f} s), capped at {cfg.io_cap:g} s"
        )
        for system in systems.values():  # warm-up of the async path, unmeasured
            warm = min(n, 1_000)
            system.reset()
            system.fill(warm)
            system.io(warm, conc, cfg.io_sleep, cfg.io_cap)
        seconds: dict[str, list[float]] = {s: [] for s in systems}
        rates: dict[str, list[float]] = {s: [] for s in systems}
        peaks: dict[str, list[float]] = {s: [] for s in systems}
        capped: dict[str, int] = {s: 0 for s in systems}
        for _ in range(cfg.repeat):
            for name, system in systems.items():
                system.reset()
                system.fill(n)
                out = system.io(n, conc, cfg.io_sleep, cfg.io_cap)
                seconds[name].append(out["seconds"])
                rates[name].append(out["processed"] / out["seconds"])
                peaks[name].append(out["peak"])
                capped[name] += bool(out["capped"])
        for name in systems:
            self.put("io_seconds", name, seconds[name], capped=capped[name])
            self.put("io_rate", name, rates[name], capped=capped[name])
            self.put("io_peak", name, peaks[name])
            log(
                f"  {name:<14} {self.results['io_seconds'][name]['median']:.2f} s, "
                f"{self.results['io_rate'][name]['median']:,.0f} jobs/s, at most "
                f"{self.results['io_peak'][name]['median']:,.0f} handlers waiting at once"
                + (f" ({capped[name]}/{cfg.repeat} runs capped)" if capped[name] else "")
            )

    def _row_mixed(self, systems: dict[str, Any]) -> None:
        cfg = self.config
        log(
            f"row 5: mixed load, one producer putting one at a time for {cfg.mixed_seconds:g} s, "
            f"consumer concurrency {cfg.mixed_concurrency}"
        )
        rates: dict[str, list[float]] = {s: [] for s in systems}
        puts: dict[str, list[float]] = {s: [] for s in systems}
        p99s: dict[str, list[float]] = {s: [] for s in systems}
        for _ in range(cfg.repeat):
            for name, system in systems.items():
                system.reset()
                out = system.mixed(cfg.mixed_seconds, cfg.mixed_concurrency)
                rates[name].append(out["processed_in_window"] / out["seconds"])
                puts[name].append(out["put"] / out["seconds"])
                p99s[name].append(percentile(out["latencies"], 99))
                self.samples["mixed"].setdefault(name, []).extend(out["latencies"])
        for name in systems:
            self.put("mixed_rate", name, rates[name], put_rate=summarize(puts[name]))
            self.put("mixed_p99", name, p99s[name])
            log(
                f"  {name:<14} {self.results['mixed_rate'][name]['median']:,.0f} jobs/s processed "
                f"(put {summarize(puts[name])['median']:,.0f}/s), put->start p99 "
                f"{self.results['mixed_p99'][name]['median']:.2f} ms"
            )

    def _row_memory(self) -> None:
        cfg = self.config
        log(f"row 6: memory broker burn-down ({cfg.memory_jobs:,} jobs)")
        memory_burn(min(cfg.memory_jobs, 5_000), 8)  # warm-up
        by_conc: dict[int, list[float]] = {c: [] for c in cfg.memory_concurrencies}
        for _ in range(cfg.repeat):
            for conc in cfg.memory_concurrencies:
                by_conc[conc].append(memory_burn(cfg.memory_jobs, conc))
        best = max(by_conc, key=lambda c: summarize(by_conc[c])["median"])
        self.put(
            "memory_burn",
            "taskmaster",
            by_conc[best],
            concurrency=best,
            by_concurrency={c: summarize(v) for c, v in by_conc.items()},
        )
        for conc, vals in by_conc.items():
            log(f"  c={conc:<3} {summarize(vals)['median']:,.0f} jobs/s")

    def _backlog_rate(self, tm: TaskmasterSystem, backlog: int, failed: int) -> float:
        cfg = self.config
        tm.reset()
        fill_sql(tm.dsn, cfg.backlog_measure)
        fill_sql(tm.dsn, backlog, start=cfg.backlog_measure)
        fill_sql(tm.dsn, failed, start=10**9, state="failed")
        execute(tm.dsn, f"VACUUM ANALYZE {TABLE}")
        out = tm.burn(cfg.backlog_measure, cfg.backlog_concurrency, 300, exact=False)
        if out["capped"]:
            raise BenchError("backlog: the measured jobs did not finish within 300 s")
        return float(cfg.backlog_measure / out["seconds"])

    def _row_backlog(self, tm: TaskmasterSystem) -> None:
        cfg = self.config
        log(
            f"row 7: flat cost with backlog: first {cfg.backlog_measure:,} jobs with "
            f"{cfg.backlog_small:,} vs {cfg.backlog_large:,} more queued, and with "
            f"{cfg.backlog_failed:,} failed rows (concurrency {cfg.backlog_concurrency})"
        )
        scenarios = {
            "small": (cfg.backlog_small, 0),
            "large": (cfg.backlog_large, 0),
            "small_failed": (cfg.backlog_small, cfg.backlog_failed),
            "large_failed": (cfg.backlog_large, cfg.backlog_failed),
        }
        rates: dict[str, list[float]] = {k: [] for k in scenarios}
        for _ in range(cfg.repeat):
            for key, (backlog, failed) in scenarios.items():
                rates[key].append(self._backlog_rate(tm, backlog, failed))
        tm.reset()
        for key, vals in rates.items():
            self.put(f"backlog_rate_{key}", "taskmaster", vals)
            log(f"  {key:<13} {summarize(vals)['median']:,.0f} jobs/s")
        ratio_large = [b / a for a, b in zip(rates["small"], rates["large"], strict=True)]
        ratio_failed = [
            b / a for a, b in zip(rates["small_failed"], rates["large_failed"], strict=True)
        ]
        ratio_vs_clean = [b / a for a, b in zip(rates["small"], rates["small_failed"], strict=True)]
        self.put("backlog_ratio", "taskmaster", ratio_large)
        self.put("backlog_ratio_failed", "taskmaster", ratio_failed)
        self.put("backlog_ratio_failed_vs_clean", "taskmaster", ratio_vs_clean)
        log(
            f"  ratio large/small {summarize(ratio_large)['median']:.3f}; with failed rows "
            f"{summarize(ratio_failed)['median']:.3f}; failed/clean "
            f"{summarize(ratio_vs_clean)['median']:.3f}"
        )

    def _row_rss(self, tm: TaskmasterSystem) -> None:
        cfg = self.config
        log(
            f"row 8: worker RSS after {cfg.rss_small:,} vs {cfg.rss_large:,} no-op jobs "
            f"(Postgres, concurrency {cfg.rss_concurrency}, separate process, one run)"
        )
        tm.reset()
        fill_sql(tm.dsn, cfg.rss_large)
        execute(tm.dsn, f"VACUUM ANALYZE {TABLE}")
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks",
                "_rss",
                "--dsn",
                tm.dsn,
                "--small",
                str(cfg.rss_small),
                "--large",
                str(cfg.rss_large),
                "--concurrency",
                str(cfg.rss_concurrency),
            ],
            capture_output=True,
            text=True,
            check=False,
            cwd=str(Path(__file__).resolve().parent.parent),
        )
        tm.reset()
        if out.returncode != 0:
            raise BenchError(f"rss subprocess failed:\n{out.stdout}\n{out.stderr}")
        data = json.loads(out.stdout.strip().splitlines()[-1])
        ratio = data["rss_large_kib"] / data["rss_small_kib"]
        self.put("rss_ratio", "taskmaster", [ratio], **data)
        log(
            f"  RSS {data['rss_small_kib'] / 1024:.1f} MiB after {cfg.rss_small:,}, "
            f"{data['rss_large_kib'] / 1024:.1f} MiB after {cfg.rss_large:,}: ratio {ratio:.3f} "
            f"({data['rate']:,.0f} jobs/s over the run)"
        )
