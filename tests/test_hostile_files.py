"""Files the tool reads back, validated like a recipe: a ``prompts.lock.yaml`` that is hostile (an alias bomb, deep
nesting, Latin-1 bytes, wrong types, too many or too long prompts) is refused naming the file and every problem,
read through the bounded YAML reader (``synthcore.yamlfile``) before anything is built from it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from builders.expansion import LockMismatch, expansion_needs, lock_text, locked_recipe, with_prompts
from builders.limits import MAX_PROMPTS_PER_CLASS, MAX_TEXT_CHARS
from builders.recipe import parse_recipe
from builders.store.prompt_lock import PROMPT_LOCK, read_prompt_lock

RECIPE = """
name: lock
model: {id: tiny-random, safety_checker: false}
classes:
  fox: {prompts: [a red fox]}
  dog: {prompts: [a dog]}
splits: {train: 4}
prompt_expansion: {model: tiny-random, per_class: 2, max_new_tokens: 8}
"""


def settings_yaml() -> str:
    """The lock's first part, exactly as the build writes it for RECIPE."""
    recipe = parse_recipe(RECIPE)
    return lock_text(with_prompts(recipe, {"fox": ["p", "q"], "dog": ["r", "s"]})).split("prompts:")[0]


def alias_bomb() -> str:
    """Nine levels of nine aliases: under 1 KB of YAML that expands to 9^9 strings."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    return "prompt_expansion: {model: tiny-random}\nprompts:\n" + "\n".join(f"  {line}" for line in lines) + "\n"


HOSTILE_LOCKS = {
    "alias bomb": (alias_bomb().encode(), "expands to more than"),
    "deep nesting": (("prompts: " + "[" * 100 + "]" * 100 + "\n").encode(), "nests deeper than"),
    "Latin-1 bytes": ("prompts: {fox: [renard \xe9t\xe9]}\n".encode("latin-1"), "the file is not UTF-8"),
    "not a mapping": (b"- just\n- a list\n", "expected a mapping of prompt lock keys"),
    "prompts of wrong types": (
        b"prompt_expansion: {}\nprompts: {fox: 5, dog: [1, 2]}\n",
        "prompts.fox: Input should be",
    ),
    "settings of wrong types": (b"prompt_expansion: {model: [x]}\nprompts: {fox: [p]}\n", "prompt_expansion.model"),
    "too long a prompt": (
        f"prompt_expansion: {{}}\nprompts: {{fox: [{'x' * (MAX_TEXT_CHARS + 1)}]}}\n".encode(),
        "at most 1000 characters",
    ),
    "an unknown key": (b"prompt_expansion: {}\nprompts: {}\nrun: rm -rf /\n", "run: unknown key"),
}


@pytest.mark.parametrize("case", HOSTILE_LOCKS)
def test_a_hostile_lock_is_refused_naming_the_file(case: str, tmp_path: Path):
    content, expected = HOSTILE_LOCKS[case]
    (tmp_path / PROMPT_LOCK).write_bytes(content)
    started = time.perf_counter()
    with pytest.raises(LockMismatch) as caught:
        locked_recipe(parse_recipe(RECIPE), read_prompt_lock(tmp_path))
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / PROMPT_LOCK}: invalid prompt lock") and expected in message, message
    assert "--overwrite" in message and len(message) < 2000
    assert time.perf_counter() - started < 5
    assert (
        expansion_needs(parse_recipe(RECIPE), read_prompt_lock(tmp_path), overwrite=False) == []
    )  # refused before any model loads


def test_too_many_prompts_in_a_lock_are_refused(tmp_path: Path):
    prompts = ", ".join(f"p{i}" for i in range(MAX_PROMPTS_PER_CLASS + 1))
    (tmp_path / PROMPT_LOCK).write_text(f"{settings_yaml()}prompts: {{fox: [{prompts}], dog: [r, s]}}\n")
    with pytest.raises(LockMismatch, match=rf"prompts.fox: List should have at most {MAX_PROMPTS_PER_CLASS} items"):
        locked_recipe(parse_recipe(RECIPE), read_prompt_lock(tmp_path))


def test_a_lock_whose_prompts_do_not_fit_the_recipe_is_named(tmp_path: Path):
    (tmp_path / PROMPT_LOCK).write_text(f"{settings_yaml()}prompts: {{fox: [p, q, r], dog: [s, t]}}\n")
    with pytest.raises(LockMismatch) as caught:
        locked_recipe(parse_recipe(RECIPE), read_prompt_lock(tmp_path))
    assert str(caught.value).startswith(f"{tmp_path / PROMPT_LOCK}: its prompts do not fit the recipe")
    assert "prompt_expansion.prompts.fox: 3 prompts; per_class is 2" in str(caught.value)


def test_the_lock_the_build_writes_reads_back(tmp_path: Path):
    recipe = parse_recipe(RECIPE)
    locked = with_prompts(recipe, {"fox": ["ünï “quoted”", "two: x"], "dog": ["d1", "d2"]})
    (tmp_path / PROMPT_LOCK).write_text(lock_text(locked), encoding="utf-8")
    assert locked_recipe(recipe, read_prompt_lock(tmp_path)) == locked
