"""docs/guarantees.md links each promise to its test: those tests exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "guarantees.md"
LINK = re.compile(r"\[`([\w.]+\.py)(?:::(\w+))?`\]\(\.\./(tests/[\w/]+\.py)\)")
BARE = re.compile(r"\[`(test_\w+\.py)`\]\(\.\./(tests/[\w/]+\.py)\): ([^|]+)")


def _tests_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}


def test_every_linked_test_exists() -> None:
    text = DOC.read_text()
    checked = 0
    for name, function, target in LINK.findall(text):
        path = ROOT / target
        assert path.name == name, (name, target)
        assert path.exists(), target
        if function:
            assert function in _tests_in(path), f"{target}::{function}"
            checked += 1
    for _name, target, listed in BARE.findall(text):
        for function in re.findall(r"`(test_\w+)`", listed):
            assert function in _tests_in(ROOT / target), f"{target}::{function}"
            checked += 1
    assert checked >= 25
