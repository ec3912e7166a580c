"""taskmaster_core.testing's front door: exactly its public names, and a test-time
dependency only (importing taskmaster_core never imports pytest or hypothesis)."""

from __future__ import annotations

import subprocess
import sys

import taskmaster_core.testing


def test_all_is_exactly_the_public_names() -> None:
    names = vars(taskmaster_core.testing)
    # "@py_builtins" and "@pytest_ar" are there when pytest rewrote the module's asserts.
    public = {name for name in names if not name.startswith(("_", "@"))}
    public -= {"annotations", "pytest"}
    assert sorted(taskmaster_core.testing.__all__) == sorted(public)
    for name in taskmaster_core.testing.__all__:
        assert getattr(taskmaster_core.testing, name) is not None


def test_importing_taskmaster_core_imports_no_test_dependency() -> None:
    code = (
        "import sys, taskmaster_core, taskmaster_memory;"
        " print(sorted({'pytest', 'hypothesis', 'taskmaster_core.testing'} & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
