"""docs/cli.md documents every subcommand and every long option of `taskmaster`."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from taskmaster_core._cli import _parser, main

CLI_DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def long_options(parser: argparse.ArgumentParser) -> set[str]:
    return {
        option
        for action in parser._actions
        for option in action.option_strings
        if option.startswith("--")
    }


def test_every_subcommand_and_long_option_is_documented() -> None:
    doc = CLI_DOC.read_text(encoding="utf-8")
    parser = _parser()
    commands = subcommands(parser)
    assert commands, "taskmaster has no subcommands?"
    common = long_options(parser)  # documented once, with the global options
    missing = [f"taskmaster {option}" for option in sorted(common) if option not in doc]
    for name, sub in commands.items():
        if f"### {name}\n" not in doc:
            missing.append(f"a '### {name}' section")
        section = doc.split(f"### {name}\n", 1)[-1].split("\n### ", 1)[0]
        missing += [
            f"taskmaster {name} {option}"
            for option in sorted(long_options(sub))
            if option not in common and option not in section
        ]
    assert not missing, f"docs/cli.md does not document: {missing}"


def test_documented_commands_exist() -> None:
    doc = CLI_DOC.read_text(encoding="utf-8")
    documented = {
        line.removeprefix("### ").strip() for line in doc.splitlines() if line.startswith("### ")
    }
    assert documented == set(subcommands(_parser())), (
        "the ### sections of docs/cli.md are not the commands of taskmaster --help"
    )


def test_exit_codes_and_url_variable_are_documented() -> None:
    doc = CLI_DOC.read_text(encoding="utf-8")
    assert "TASKMASTER_URL" in doc
    for code in ("| 0 |", "| 1 |", "| 2 |"):
        assert code in doc


def test_troubleshooting_does_not_say_global_options_must_come_first(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Either side of the command works, as docs/cli.md says ...
    assert main(["stats", "--url", "memory://"]) == 0
    assert main(["--url", "memory://", "stats"]) == 0
    assert capsys.readouterr().out.splitlines() == ["no jobs", "no jobs"]
    # ... so no doc may say otherwise.
    for doc in sorted(CLI_DOC.parent.glob("*.md")):
        text = " ".join(doc.read_text(encoding="utf-8").split())
        assert "must come before the command" not in text, doc.name
