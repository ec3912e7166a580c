"""The distribution's name is ours: nothing installs the unrelated `taskmaster`.

PyPI's `taskmaster` (0.8.2, 2013) is another project; an install line, extra,
or plugin dependency naming it would pull that one in.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from importlib.metadata import distribution
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NAME = "taskmaster-jobs"
TAKEN = re.compile(r"""(?<![\w./-])taskmaster(\[[\w,]+\])?(?=['"\s>=<~!]|$)""")


def tracked_text_files() -> list[Path]:
    names = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    wanted = {".md", ".toml", ".py", ".txt", ".cfg", ".sh"}
    this = Path(__file__).resolve()
    return [
        ROOT / n
        for n in names
        if (Path(n).suffix in wanted or n.startswith(".ci/")) and ROOT / n != this
    ]


def test_the_project_and_its_plugin_example_use_the_free_name() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == NAME
    plugin = tomllib.loads((ROOT / "examples/taskmaster_audit/pyproject.toml").read_text())
    assert plugin["project"]["dependencies"] == [NAME]
    assert distribution(NAME).entry_points.select(group="console_scripts")["taskmaster"]


def test_no_install_line_or_requirement_names_the_taken_distribution() -> None:
    offenders = []
    for path in tracked_text_files():
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            install = "pip install" in line or "dependencies" in line or "Requires" in line
            if (
                (install or "taskmaster[" in line) and "taskmaster[" in line.replace(f"{NAME}[", "")
            ) or ("pip install" in line and TAKEN.search(line.split("pip install", 1)[1])):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []
