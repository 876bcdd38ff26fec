"""The README says how to install, lint and test, and CI runs exactly that (the rest of the docs: test_docs.py)."""

from __future__ import annotations

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
