"""``python -m benchmarks [--quick] [--dsn ADMIN_DSN] ...`` and ``python -m benchmarks profile``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ._common import DEFAULT_ADMIN_DSN

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_rss"]:
        return _rss(argv[1:])
    if argv[:1] == ["profile"]:
        return _profile(argv[1:])

    from ._runner import ALL_ROWS, ALL_SYSTEMS, Config, Runner

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Throughput/latency of Taskmaster vs procrastinate and PgQueuer "
        "(each on its own fresh database), plus the raw-SQL ceiling (pgbench). "
        "Subcommand `profile` runs the Taskmaster burn-down under cProfile.",
    )
    parser.add_argument(
        "--dsn",
        default=DEFAULT_ADMIN_DSN,
        help="admin DSN; the harness creates and drops its own databases (default %(default)s)",
    )
    parser.add_argument("--quick", action="store_true", help="small counts, 1 repeat (smoke test)")
    parser.add_argument("--repeat", type=int, help="repeats per measurement (default 3; quick 1)")
    parser.add_argument(
        "--systems",
        type=_csv,
        default=list(ALL_SYSTEMS),
        help=f"comma-separated subset of {','.join(ALL_SYSTEMS)}",
    )
    parser.add_argument(
        "--rows",
        type=_csv,
        default=list(ALL_ROWS),
        help=f"comma-separated subset of {','.join(ALL_ROWS)}",
    )
    parser.add_argument(
        "--out", type=Path, help="output folder (default benchmarks/results/<timestamp>)"
    )
    args = parser.parse_args(argv)
    unknown = [s for s in args.systems if s not in ALL_SYSTEMS] + [
        r for r in args.rows if r not in ALL_ROWS
    ]
    if unknown:
        parser.error(f"unknown systems/rows: {', '.join(unknown)}")
    config = Config.quick() if args.quick else Config()
    if args.repeat is not None:
        if args.repeat < 1:
            parser.error("--repeat must be >= 1")
        config.repeat = args.repeat
    out = args.out or RESULTS_DIR / time.strftime("%Y%m%d-%H%M%S")

    from ._report import write_all

    data = Runner(args.dsn, config, args.systems, args.rows).run()
    table = write_all(data, out)
    print()
    print(table)
    print(
        f"results: {out}/results.md, results.json, benchmarks.png ({data['seconds']:.0f} s; "
        f"load average {data['machine']['loadavg_start']} at the start, "
        f"{data['loadavg_end']} at the end)"
    )
    return 0


def _rss(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks _rss")
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--small", type=int, required=True)
    parser.add_argument("--large", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    from ._rss import main as rss_main

    rss_main(args.dsn, args.small, args.large, args.concurrency)
    return 0


def _profile(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks profile",
        description="Taskmaster Postgres burn-down under cProfile; top entries by "
        "cumulative and by own time.",
    )
    parser.add_argument("--dsn", default=DEFAULT_ADMIN_DSN, help="admin DSN")
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--quick", action="store_true", help="20,000 jobs")
    parser.add_argument(
        "--handler",
        choices=("sync", "async"),
        default="sync",
        help="the no-op handler as a plain function or as `async def` (default %(default)s)",
    )
    parser.add_argument("--out", type=Path, help="also write the report to this file")
    args = parser.parse_args(argv)
    from ._profile import run_profile

    report = run_profile(
        args.dsn,
        20_000 if args.quick else args.jobs,
        args.concurrency,
        args.top,
        kind=args.handler,
    )
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
