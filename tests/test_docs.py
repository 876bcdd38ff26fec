"""README.md and docs/ stay in step with the code: links and anchors resolve, the recipes, modules, scripts and
command-line options they name exist, the dotted names they (and the code's docstrings) cite import, and the exit
codes they list are the code's."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import re
import signal
import unicodedata
from functools import cache
from pathlib import Path

import pytest

from synthcore.availability import MODEL_UNAVAILABLE
from synthcore.faults import OUTPUT_REFUSED, WRITE_FAILED
from synthcore.hub import PUSH_FAILED
from tests.helpers import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BAD_INPUT = 2  # argparse's own code for bad options, which every command also uses for bad input
CODE_BLOCK = re.compile(r"^```.*?^```", re.S | re.M)
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)\)")
DOTTED = re.compile(r"`((?:builders|eval|training|synthcore)(?:\.\w+)+)")
PACKAGES = ("builders", "eval", "training", "synthcore", "benchmarks", "tests")
COMMAND = {
    "build.py": "builders.cli",
    "-m eval": "eval.standalone",
    "-m eval --compare": "eval.compare",
    "-m training": "training.__main__",
}


def page_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def prose(path: Path) -> str:
    """The page without its fenced code blocks (a ``#`` there is a comment, a ``[x](y)`` is code)."""
    return CODE_BLOCK.sub("", text(path))


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    heading = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    kept = "".join(c for c in heading if c in " -_" or unicodedata.category(c)[0] in "LNM")
    return kept.replace(" ", "-")


@cache
def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", prose(path), re.M):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_relative_link_and_anchor_resolves(page: Path):
    broken = []
    for target in LINK.findall(prose(page)):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading with that anchor in {resolved.name}")
    assert not broken, broken


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in LINK.findall(prose(ROOT / "README.md"))}
    assert [page_id(p) for p in PAGES[1:] if p.resolve() not in linked] == []


def test_every_shipped_recipe_is_named_in_the_readme_and_every_named_recipe_exists():
    readme = text(ROOT / "README.md")
    assert [p.name for p in (ROOT / "recipes").glob("*.yaml") if f"recipes/{p.name}" not in readme] == []
    named = {name for page in PAGES for name in re.findall(r"recipes/[\w.-]+\.yaml", text(page))}
    assert sorted(name for name in named if not (ROOT / name).is_file()) == []


def test_every_module_and_script_the_docs_run_exists():
    missing = []
    for page in PAGES:
        for module in re.findall(r"(?:python|launch) -m ([a-z_][\w.]*)", text(page)):
            if importlib.util.find_spec(module) is None:
                missing.append(f"{page_id(page)}: python -m {module}")
        for script in re.findall(r"python ([\w/]+\.py)", text(page)):
            if not (ROOT / script).is_file():
                missing.append(f"{page_id(page)}: python {script}")
    assert missing == []


class _Parsed(Exception):
    def __init__(self, parser: argparse.ArgumentParser):
        self.parser = parser


@cache
def options_of(module: str) -> frozenset[str]:
    """Every option string the command's own argparse parser accepts (its ``main`` stopped at parsing)."""

    def stop(parser, *args, **kwargs):
        raise _Parsed(parser)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(argparse.ArgumentParser, "parse_args", stop)
        patch.setattr(argparse.ArgumentParser, "parse_intermixed_args", stop)  # build.py's, for its overrides
        with pytest.raises(_Parsed) as parsed:
            importlib.import_module(module).main([])
    return frozenset(parsed.value.parser._option_string_actions)


def command_lines(page: Path) -> list[str]:
    """Each command of a code block (continuation lines joined, comments cut) and each inline code span."""
    lines = []
    for block in CODE_BLOCK.findall(text(page)):
        lines += [line.split(" #")[0] for line in block.replace("\\\n", " ").splitlines()]
    return lines + re.findall(r"`([^`\n]+)`", prose(page))


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_option_given_to_a_command_is_one_its_parser_accepts(page: Path):
    unknown = []
    for line in command_lines(page):
        for command, module in COMMAND.items():
            if command in line and not any(command in c and c in line for c in COMMAND if c != command):
                after = line.split(command, 1)[1]
                flags = re.findall(r"(?<![\w-])(--[a-z][\w-]*)", after)
                unknown += [f"{command} {flag}" for flag in flags if flag not in options_of(module)]
    assert unknown == []


def test_every_option_of_the_training_table_is_one_python_m_training_accepts():
    page = ROOT / "docs" / "training.md"
    rows = re.findall(r"^\| (`--.+?) \|", text(page), re.M)
    flags = {flag for row in rows for flag in re.findall(r"`(--[\w-]+)", row)}
    assert len(flags) > 10 and flags <= options_of("training.__main__"), flags - options_of("training.__main__")


def resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            if not hasattr(found, name):
                return False
            found = getattr(found, name)
        return True
    return False


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_dotted_name_the_docs_cite_imports(page: Path):
    cited = sorted(set(DOTTED.findall(text(page))))
    assert [name for name in cited if not resolves(name)] == []


def documented_exit_codes() -> set[int]:
    table = text(ROOT / "docs" / "exit-codes.md")
    return {int(code) for cell in re.findall(r"^\| ([\d, ]+) \|", table, re.M) for code in cell.split(",")}


def test_the_exit_code_table_lists_the_codes_the_code_defines():
    defined = {0, BAD_INPUT, PUSH_FAILED, MODEL_UNAVAILABLE, OUTPUT_REFUSED, WRITE_FAILED}
    defined |= {128 + signal.SIGINT, 128 + signal.SIGTERM}
    assert documented_exit_codes() == defined


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_exit_code_a_page_mentions_is_in_the_table(page: Path):
    mentioned = re.findall(r"exit(?:s| code| codes)? \**(\d+)", text(page))
    assert {int(code) for code in mentioned} <= documented_exit_codes()


@cache
def every_known_option() -> frozenset[str]:
    """The options of our three commands, of the benchmarks (their sources) and of ``accelerate launch``."""
    from accelerate.commands.launch import launch_command_parser

    known = set(launch_command_parser()._option_string_actions)
    for module in COMMAND.values():
        known |= options_of(module)
    for script in (ROOT / "benchmarks").glob("*.py"):
        known |= set(re.findall(r"\"(--[\w-]+)\"", text(script)))
    return frozenset(known)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_option_named_in_the_text_belongs_to_some_command(page: Path):
    named = set(re.findall(r"`(--[a-z][\w-]*)", prose(page)))
    assert sorted(named - every_known_option()) == []


def test_every_dotted_name_a_docstring_or_comment_cites_imports():
    sources = [ROOT / "build.py", *(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))]
    stale = [
        f"{page_id(path)}: {name}"
        for path in sources
        for name in sorted(set(DOTTED.findall(text(path))))
        if not resolves(name)
    ]
    assert stale == []
