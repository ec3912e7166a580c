"""results.json, results.md and the PNG plots of one run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ._common import percentile

PEERS = ("procrastinate", "pgqueuer")
DASH = "\u2013"  # en dash, for ranges
TIMES = "\u00d7"  # multiplication sign, for ratios
SAME_ROW = "1. same,"
"""Label start of a row that repeats row 1 against another ceiling."""


def row_specs(
    concurrencies: list[int], first: int, io: dict[str, Any] | None = None
) -> list[tuple[str, str, str, str | None]]:
    """(result key, label, unit, raw-SQL key). ``io``: the run's config, for
    the ``io`` row's labels."""
    specs: list[tuple[str, str, str, str | None]] = [
        ("put_one", "1. put, one job per call", "jobs/s", "raw_insert_1"),
        (
            "put_one",
            f"{SAME_ROW} raw SQL: Taskmaster's INSERT on its own table",
            "jobs/s",
            "raw_insert_1_jobs_table",
        ),
        ("put_many", "2. put many (bulk API)", "jobs/s", "raw_insert_100"),
    ]
    for c in concurrencies:
        raw = "raw_delete_1" if c == 1 else None
        specs.append((f"burn_c{c}", f"3. process no-op jobs, concurrency {c}", "jobs/s", raw))
    specs.append(
        ("burn_best", "3. process no-op jobs, best concurrency", "jobs/s", "raw_delete_100")
    )
    for c in concurrencies:
        specs.append(
            (f"burn_async_c{c}", f"3a. same, async handler, concurrency {c}", "jobs/s", None)
        )
        specs.append(
            (f"burn_async_ratio_c{c}", f"3a. async / sync handler, concurrency {c}", "ratio", None)
        )
    specs += [
        ("burn_async_best", "3a. same, async handler, best concurrency", "jobs/s", None),
        ("burn_async_ratio_best", "3a. async best / sync best", "ratio", None),
        ("latency_p50", "4. put→start, idle consumer, p50", "ms", None),
        ("latency_p90", "4. put→start, idle consumer, p90", "ms", None),
        ("latency_p99", "4. put→start, idle consumer, p99", "ms", None),
        ("latency_async_p50", "4a. same, async handler, p50", "ms", None),
        ("latency_async_p90", "4a. same, async handler, p90", "ms", None),
        ("latency_async_p99", "4a. same, async handler, p99", "ms", None),
        ("mixed_rate", "5. mixed load: processed while putting", "jobs/s", None),
        ("mixed_p99", "5. mixed load: put→start p99", "ms", None),
        ("memory_burn", "6. memory broker, process no-op jobs", "jobs/s", None),
        ("backlog_rate_small", f"7. first {first:,} jobs, small backlog", "jobs/s", None),
        ("backlog_rate_large", f"7. first {first:,} jobs, large backlog", "jobs/s", None),
        ("backlog_ratio", "7. rate ratio large/small backlog", "ratio", None),
        ("backlog_ratio_failed", "7. same, with failed rows kept", "ratio", None),
        ("backlog_ratio_failed_vs_clean", "7. small backlog: failed rows / none", "ratio", None),
        ("rss_ratio", "8. worker RSS ratio (large / small run)", "ratio", None),
    ]
    cfg = io or {}
    jobs, conc = cfg.get("io_jobs", 10_000), cfg.get("io_concurrency", 1_000)
    sleep = cfg.get("io_sleep", 0.1)
    what = f"10. I/O-bound: {jobs:,} jobs awaiting asyncio.sleep({sleep:g}), concurrency {conc:,}"
    specs += [
        ("io_seconds", f"{what}, wall time", "s", None),
        ("io_rate", f"{what}, rate", "jobs/s", None),
        ("io_peak", "10. most handlers waiting at once", "jobs", None),
    ]
    return specs


def fmt(value: float, unit: str) -> str:
    if unit in ("ms", "s"):
        return f"{value:.2f}"
    if unit == "ratio":
        return f"{value:.3f}"
    return f"{value:,.0f}"


def cell(entry: dict[str, Any] | None, unit: str) -> str:
    if not entry:
        return "—"
    text = fmt(entry["median"], unit)
    if len(entry.get("values", [])) > 1:
        text += f" ({fmt(entry['min'], unit)}{DASH}{fmt(entry['max'], unit)})"
    if entry.get("capped"):
        text += " ⏱"
    if "concurrency" in entry and unit == "jobs/s":
        text += f" @c={entry['concurrency']}"
    return text


def ratio(a: dict[str, Any] | None, b: dict[str, Any] | None, unit: str = "") -> str:
    if not a or not b or not b["median"] or unit == "jobs":
        return "—"
    return f"{a['median'] / b['median']:.2f}{TIMES}"


def markdown_table(data: dict[str, Any]) -> str:
    results = data["results"]
    concurrencies = list(data["config"]["concurrencies"])
    labels = {name: info["label"] for name, info in data["systems"].items()}
    head = [
        "row",
        "unit",
        labels.get("taskmaster", "Taskmaster"),
        labels.get("procrastinate", "procrastinate"),
        labels.get("pgqueuer", "PgQueuer"),
        "raw SQL (pgbench)",
        "TM / procrastinate",
        "TM / PgQueuer",
        "TM / raw SQL",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    specs = row_specs(concurrencies, data["config"]["backlog_measure"], data["config"])
    for key, label, unit, raw_key in specs:
        row = results.get(key, {})
        if label.startswith(SAME_ROW):  # only the new ceiling and Taskmaster's ratio to it
            row = {"taskmaster": row["taskmaster"]} if "taskmaster" in row else {}
        raw = results.get(raw_key, {}).get("rawsql") if raw_key else None
        if not row and not raw:
            continue
        tm = row.get("taskmaster")
        lines.append(
            "| "
            + " | ".join(
                [
                    label,
                    unit,
                    cell(tm, unit),
                    cell(row.get("procrastinate"), unit),
                    cell(row.get("pgqueuer"), unit),
                    cell(raw, "jobs/s") if raw else "—",
                    ratio(tm, row.get("procrastinate"), unit),
                    ratio(tm, row.get("pgqueuer"), unit),
                    ratio(tm, raw),
                ]
            )
            + " |"
        )
    notes = [
        "",
        f"Medians of the repeats, (min{DASH}max) when repeated. Ratios are Taskmaster's median "
        "over the other's: above 1 is better for jobs/s, below 1 is better for ms and s. "
        "⏱ = at least one run stopped at the peer's time cap (rate over the jobs done). "
        "Raw SQL is in rows/s. 3a/4a: Taskmaster with an `async def` handler, each run "
        "right after the sync run of the same repeat; async/sync ratios are the median of "
        "those pairs (best: of the two best medians).",
    ]
    return "\n".join(lines + notes) + "\n"


def write_plots(data: dict[str, Any], out: Path) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plots (pip install -e '.[bench]')")
        return []
    labels = {name: info["label"] for name, info in data["systems"].items()}
    written = []
    async_label = " (async handler)"
    burn = {(name, labels[name]): v for name, v in data["samples"].get("burn", {}).items()}
    for name, by_text in data["samples"].get("burn_async", {}).items():
        burn[(name + "_async", labels[name] + async_label)] = by_text
    latency = {(name, labels[name]): v for name, v in data["samples"].get("latency", {}).items()}
    for name, samples in data["samples"].get("latency_async", {}).items():
        latency[(name + "_async", labels[name] + async_label)] = samples
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    ax = axes[0]
    for (_, label), by_text in burn.items():
        by_conc = {int(c): v for c, v in by_text.items()}  # JSON made the keys strings
        concs = sorted(by_conc)
        med = [by_conc[c]["median"] for c in concs]
        low = [by_conc[c]["median"] - by_conc[c]["min"] for c in concs]
        high = [by_conc[c]["max"] - by_conc[c]["median"] for c in concs]
        ax.errorbar(concs, med, yerr=[low, high], marker="o", capsize=3, label=label)
    raw = data["results"].get("raw_delete_100", {}).get("rawsql")
    if raw:
        ax.axhline(raw["median"], linestyle="--", color="grey", label="raw SQL DELETE…LIMIT 100")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("concurrency (worker threads / async tasks)")
    ax.set_ylabel("jobs/s (log)")
    ax.set_title("Burn-down of a pre-filled queue, no-op jobs")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # a partial run may have drawn nothing
        ax.legend()
    ax = axes[1]
    for (_, label), samples in latency.items():
        ordered = sorted(samples)
        n = len(ordered)
        ax.plot(ordered, [(i + 1) / n for i in range(n)], label=label)
    ax.set_xscale("log")
    ax.set_xlabel("put → handler start (ms, log)")
    ax.set_ylabel("fraction of jobs")
    ax.set_title("Latency with an idle consumer (CDF)")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # a partial run may have drawn nothing
        ax.legend()
    fig.tight_layout()
    path = out / "benchmarks.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    return written


def write_all(data: dict[str, Any], out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    table = markdown_table(data)
    samples = data["samples"]
    summary = {
        kind: {
            name: {p: percentile(vals, p) for p in (50, 90, 99, 99.9)}
            for name, vals in samples.get(kind, {}).items()
        }
        for kind in ("latency", "latency_async")
    }
    (out / "results.json").write_text(
        json.dumps({**data, "latency_summary": summary}, indent=2, default=str)
    )
    machine = data["machine"]
    header = (
        f"# Benchmark run\n\n{machine['nproc']} CPUs ({machine['cpu']}), "
        f"{machine['memory_gib']} GiB, PostgreSQL {machine['postgres']} on the same machine, "
        f"Python {machine['python']}; taskmaster {machine['taskmaster_commit']}; "
        f"run took {data['seconds']:.0f} s; load average (1, 5, 15 min) "
        f"{machine.get('loadavg_start', '?')} at the start, {data.get('loadavg_end', '?')} "
        "at the end.\n\n"
    )
    settings = "\n".join(
        f"- **{info['label']}**: {info['settings']}"
        + (f"; `io` row: {info['io_settings']}" if info.get("io_settings") else "")
        for info in data["systems"].values()
    )
    skipped = "".join(f"\n- skipped (not installed): {name}" for name in data["skipped"])
    (out / "results.md").write_text(header + table + "\nSettings:\n\n" + settings + skipped + "\n")
    write_plots(data, out)
    return table
