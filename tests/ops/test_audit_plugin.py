"""examples/taskmaster_audit: a middleware plugin package installed with pip.

It is installed hermetically (``pip install --no-deps --target DIR``) and used
from subprocesses with ``PYTHONPATH=DIR``: Taskmaster finds its entry point in
the dist-info there, as it would in site-packages.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .helpers import ROOT

PLUGIN_SOURCE = ROOT / "examples" / "taskmaster_audit"

APP = textwrap.dedent(
    """
    import time
    from taskmaster_core import ACK, REJECT, Consumer, Publisher, get_plugin_manager
    from taskmaster_memory import MemoryBroker

    def handle(job):
        if job.payload == "boom":
            raise RuntimeError("boom")
        return ACK if job.payload % 2 == 0 else REJECT

    async def handle_async(job):
        return handle(job)

    pm = get_plugin_manager()
    print("plugins:", sorted(n for n, p in pm.list_name_plugin() if p is not None))
    with MemoryBroker() as broker:
        publisher = Publisher(broker)  # plugins=True is the default
        for n in [0, 1, 2]:
            publisher.put("numbers", n)
        publisher.put("numbers", "boom", max_attempts=1)
        with Consumer(broker, "numbers", handle, plugins=True):
            deadline = time.monotonic() + 10
            while broker.stats(["numbers"])[0].unfinished:
                assert time.monotonic() < deadline, "jobs still unfinished"
                time.sleep(0.01)
        # The same plugin on an async consumer (it wraps both kinds of handler).
        publisher.put("numbers", 4)
        with Consumer(broker, "numbers", handle_async, plugins=True):
            deadline = time.monotonic() + 10
            while broker.stats(["numbers"])[0].unfinished:
                assert time.monotonic() < deadline, "jobs still unfinished"
                time.sleep(0.01)
    print("done")
    """
)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plugin installed into a directory of its own (built from a copy,
    so the build leaves nothing in the repository)."""
    work = tmp_path_factory.mktemp("audit")
    source = work / "src"
    shutil.copytree(PLUGIN_SOURCE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    target = work / "site"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (dist_info,) = target.glob("taskmaster_audit-*.dist-info")
    assert "[taskmaster]" in (dist_info / "entry_points.txt").read_text()
    return target


def run_app(site: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", APP],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=site.parent,  # not the repository: only the installed copy is importable
        env={**os.environ, "PYTHONPATH": str(site), **env},
        check=False,
    )


def test_the_installed_plugin_audits_every_put_and_run(installed: Path, tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    result = run_app(installed, TASKMASTER_AUDIT_FILE=str(audit))
    assert result.returncode == 0, result.stderr
    assert "'audit'" in result.stdout  # registered under its entry-point name
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    puts = [r for r in records if r["event"] == "put"]
    runs = sorted((r["job"], r["outcome"]) for r in records if r["event"] == "run")
    assert [r["queue"] for r in puts] == ["numbers"] * 5
    assert runs == [(1, "ack"), (2, "reject"), (3, "ack"), (4, "error"), (5, "ack")]
    assert all(r["pid"] > 0 and r["elapsed_ms"] >= 0 for r in records if r["event"] == "run")


def test_without_its_setting_the_plugin_adds_nothing(installed: Path, tmp_path: Path) -> None:
    result = run_app(installed)
    assert result.returncode == 0, result.stderr
    assert "'audit'" in result.stdout
    assert not list(tmp_path.iterdir())


def test_the_plugin_can_be_disabled_by_name(installed: Path, tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    result = run_app(
        installed, TASKMASTER_AUDIT_FILE=str(audit), TASKMASTER_DISABLE_PLUGINS="audit"
    )
    assert result.returncode == 0, result.stderr
    assert "'audit'" not in result.stdout
    assert not audit.exists()


def test_not_installed_means_not_loaded(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    result = run_app(tmp_path, TASKMASTER_AUDIT_FILE=str(audit))
    assert result.returncode == 0, result.stderr
    assert "'audit'" not in result.stdout
    assert not audit.exists()
