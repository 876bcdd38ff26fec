"""The README says how to install, lint and test, and CI runs exactly that; every recipe it names exists."""

from __future__ import annotations

import re

from tests.helpers import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_ci_runs_exactly_the_readme_commands():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    commands = (
        ci.split("# The commands, exactly as README.md's Development section gives them:\n")[1].strip().splitlines()
    )
    development = README.split("## Development")[1]
    assert len(commands) >= 3
    for command in commands:
        assert command in development, f"{command!r} is run by .ci/run but not given in the README"


def test_recipes_the_readme_names_exist():
    for path in set(re.findall(r"recipes/[\w.-]+\.yaml", README)):
        assert (ROOT / path).is_file(), path
