"""Prompt expansion: a local language model writes more prompts for every class, once, and a lock file keeps them.

``prompt_expansion: {model, per_class, instruction, ...}`` asks a causal language model (transformers text
generation; ``tiny-random`` is a tiny random Llama for tests) for ``per_class`` distinct prompts per class, from
the instruction with the class's label text in ``{label}``. Sampling is not reproducible across machines and
library versions, so what it wrote is kept: the first build writes ``<output>/prompts.lock.yaml`` (the expansion
settings and the prompts; a file of the output, read where the output lives: ``builders.store.prompt_lock``) and
records the prompts in the recipe (``prompt_expansion.prompts``), so ``recipe.yaml`` and the card carry them. The
plan is a function of the recipe and its lock: a rerun or resume of the same output reads the lock and makes the
same jobs, and a rebuild from ``recipe.yaml`` needs no language model at all.

A lock made under other expansion settings is refused (exit 2) rather than silently reused or replaced;
``--overwrite`` regenerates it. In a launch of several processes the main process generates and publishes the lock,
and the others receive the prompts from it (one broadcast), so every rank plans the same jobs.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from builders.limits import MAX_CLASSES, MAX_NAME_CHARS, MAX_PROMPTS, MAX_PROMPTS_PER_CLASS
from builders.plan import derive_seed
from builders.recipe import MAX_TEXT_CHARS, Recipe, Text
from builders.store import Store
from builders.store.prompt_lock import PROMPT_LOCK, PromptLockFile
from synthcore.availability import ModelNeed, language_model
from synthcore.model_refs import TINY_RANDOM, resolve
from synthcore.outdir import OwnedDir
from synthcore.yamlfile import ConfigFileError, decode_text, format_validation_errors, load_yaml, validate

log = logging.getLogger("synthdata")

_UNPRINTABLE = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


class ExpansionError(ValueError):
    """Prompt expansion cannot go on; the message says why and what to do (exit 2)."""


class LockMismatch(ExpansionError):
    """The output's lock was made under other expansion settings (or another recipe's classes)."""


class ExpansionFailed(ExpansionError):
    """The language model wrote no usable prompt for a class in every attempt."""


# -- the lock ------------------------------------------------------------------------------------------------------
def lock_text(recipe: Recipe) -> str:
    """The lock of a recipe whose expansion is done: the settings that made the prompts, then the prompts."""
    settings = recipe.prompt_expansion
    document = {"prompt_expansion": settings.settings(), "prompts": settings.prompts}
    header = (
        "# Written once by build.py (prompt_expansion) and reused by every rerun; delete it to have new prompts "
        "written.\n"
    )
    return header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=1_000_000)


class LockFileError(ConfigFileError):
    kind = "prompt lock"


Scalar = str | int | float | bool | None


class PromptLock(BaseModel):
    """A ``prompts.lock.yaml`` as the build writes it: the expansion settings that made the prompts (compared with
    the recipe's), then each class's prompts, within the recipe's bounds on names, texts and counts."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    prompt_expansion: Annotated[dict[Annotated[str, Field(max_length=MAX_NAME_CHARS)], Scalar], Field(max_length=64)]
    prompts: Annotated[
        dict[
            Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS)],
            Annotated[list[Text], Field(max_length=MAX_PROMPTS_PER_CLASS)],
        ],
        Field(max_length=MAX_CLASSES),
    ]

    @model_validator(mode="after")
    def _bounded_total(self) -> PromptLock:
        total = sum(map(len, self.prompts.values()))
        if total > MAX_PROMPTS:
            raise ValueError(f"prompts: {total} prompts in all, more than the recipe's bound of {MAX_PROMPTS}")
        return self


def read_lock(lock: PromptLockFile) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """(settings, prompts) of an output's lock (which is there), read as a recipe is (``synthcore.yamlfile``: size,
    encoding, aliases, depth) and validated (``PromptLock``); ``LockMismatch`` naming the file and every problem when
    it is not one."""
    try:
        text = decode_text(lock.data, lock.where, LockFileError)
        data = load_yaml(text, lock.where, LockFileError)
        parsed = validate(PromptLock, data, lock.where, LockFileError, "prompt lock")
    except LockFileError as err:
        raise LockMismatch(f"{err}\nDelete it or pass --overwrite to write it again.") from None
    return parsed.prompt_expansion, parsed.prompts


def with_prompts(recipe: Recipe, prompts: dict[str, list[str]]) -> Recipe:
    """The recipe with the expanded prompts recorded (validated whole again: a hand-edited lock is checked)."""
    expansion = recipe.prompt_expansion.model_copy(update={"prompts": prompts})
    data = recipe.model_copy(update={"prompt_expansion": expansion}).model_dump(mode="json")
    return Recipe.model_validate(data)


def lock_problem(recipe: Recipe, lock: PromptLockFile) -> str | None:
    """Why the lock (which is there) cannot serve this recipe (None when it can)."""
    settings, prompts = read_lock(lock)
    expansion = recipe.prompt_expansion
    wanted = expansion.settings()
    changed = [key for key in sorted({*wanted, *settings}) if settings.get(key) != wanted.get(key)]
    if changed:
        shown = ", ".join(f"{key}: {settings.get(key)!r} there, {wanted.get(key)!r} in the recipe" for key in changed)
        return f"{lock.where} was written under other prompt_expansion settings ({shown})"
    if list(prompts) != list(recipe.classes):
        return f"{lock.where} holds the prompts of classes {list(prompts)}, the recipe has {list(recipe.classes)}"
    if expansion.prompts is not None and expansion.prompts != prompts:
        return f"{lock.where} holds other prompts than the recipe's prompt_expansion.prompts"
    return None


def locked_recipe(recipe: Recipe, lock: PromptLockFile) -> Recipe | None:
    """The recipe with its prompts from its output's ``lock`` (or recorded already); None when there is no lock
    yet. ``LockMismatch`` when the lock does not match the recipe."""
    if recipe.prompt_expansion is None:
        return recipe
    if lock.data is None:
        return recipe if recipe.prompt_expansion.prompts is not None else None
    if problem := lock_problem(recipe, lock):
        raise LockMismatch(f"{problem}. Pass --overwrite to write the prompts again, or restore the settings.")
    try:
        return with_prompts(recipe, read_lock(lock)[1])
    except ValidationError as err:  # prompts each valid, but not for this recipe (its checks across keys)
        problems = "\n".join(f"  - {p}" for p in format_validation_errors(err))
        raise LockMismatch(
            f"{lock.where}: its prompts do not fit the recipe:\n{problems}\nPass --overwrite to write them again."
        ) from None


def planned_recipe(recipe: Recipe, lock: PromptLockFile) -> tuple[Recipe, str | None]:
    """For the dry run: the locked recipe, or, before the first build, one whose expanded prompts are placeholders
    (the counts are right, the texts are not written yet), with a note saying so."""
    found = locked_recipe(recipe, lock)
    if found is not None:
        return found, None
    expansion = recipe.prompt_expansion
    placeholders = {
        name: [
            f"<prompt {i + 1} of {expansion.per_class} of {name}, not written yet>" for i in range(expansion.per_class)
        ]
        for name in recipe.classes
    }
    note = (
        f"prompt_expansion: no {PROMPT_LOCK} in {lock.output} yet; the build will have {expansion.model!r} write "
        f"{expansion.per_class} prompts per class (counted here as placeholders)"
    )
    return with_prompts(recipe, placeholders), note


def expansion_needs(recipe: Recipe, lock: PromptLockFile, overwrite: bool) -> list[ModelNeed]:
    """The language model, when this run will have to write prompts (no usable lock, none recorded)."""
    expansion = recipe.prompt_expansion
    if expansion is None or expansion.prompts is not None:
        return []
    if lock.data is not None and not (overwrite and _refused(recipe, lock)):
        return []  # the lock serves, or the build will refuse it (exit 2) before any model would load
    return [language_model("prompt_expansion.model", expansion.model, expansion.revision)]


def _refused(recipe: Recipe, lock: PromptLockFile) -> bool:
    try:
        return lock_problem(recipe, lock) is not None
    except LockMismatch:
        return True


def resolve_lock(recipe: Recipe, store: Store, state, owned: OwnedDir | None, overwrite: bool) -> Recipe:
    """The recipe with its expanded prompts, every rank alike: the main process reads the lock, or (none, or
    ``overwrite`` of one that does not match) writes the prompts and publishes the lock; the others receive the
    outcome. ``LockMismatch`` on every rank when the lock does not match and ``overwrite`` is not given."""
    if recipe.prompt_expansion is None:
        return recipe
    outcome: dict[str, Any] = {}
    if state.is_main_process:
        outcome = _main_process_lock(recipe, store.prompt_lock(), owned, overwrite, state.device)
    if state.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        outcome = broadcast_object_list([outcome])[0]
    if "error" in outcome:
        raise (ExpansionFailed if outcome.get("failed") else LockMismatch)(outcome["error"])
    return with_prompts(recipe, outcome["prompts"])


def _main_process_lock(
    recipe: Recipe, lock: PromptLockFile, owned: OwnedDir, overwrite: bool, device
) -> dict[str, Any]:
    """What ``resolve_lock`` tells every rank: the prompts (read from ``lock``, or written and published as the
    output's lock), or why there are none."""
    try:
        found = locked_recipe(recipe, lock)
    except LockMismatch as err:
        if not overwrite:
            return {"error": str(err)}
        found = None
    if found is None or found.prompt_expansion.prompts is None:
        try:
            found = with_prompts(recipe, recipe.prompt_expansion.prompts or write_prompts(recipe, device))
        except ExpansionFailed as err:
            return {"error": str(err), "failed": True}
    if lock.data != lock_text(found).encode("utf-8"):
        with owned.staging() as stage:
            (stage / PROMPT_LOCK).write_text(lock_text(found), encoding="utf-8")
            owned.publish(stage, names=[PROMPT_LOCK])
        log.info("prompt expansion: wrote %s", lock.where)
    return {"prompts": found.prompt_expansion.prompts}


# -- writing prompts -----------------------------------------------------------------------------------------------
def language_model_path(ref: str) -> str:
    """What ``from_pretrained`` is handed: ``tiny-random`` is the tiny random Llama."""
    if ref == TINY_RANDOM:
        from synthcore.tiny import tiny_language_model_dir

        return str(tiny_language_model_dir())
    return resolve(ref, "")


def write_prompts(recipe: Recipe, device="cpu") -> dict[str, list[str]]:
    """``per_class`` distinct prompts per class from the language model, each round of sampling seeded from the
    recipe's seed, the class and the round."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    expansion = recipe.prompt_expansion
    path = language_model_path(expansion.model)
    tokenizer = AutoTokenizer.from_pretrained(path, revision=expansion.revision)
    model = AutoModelForCausalLM.from_pretrained(path, revision=expansion.revision).to(device).eval()
    with torch.inference_mode():
        prompts = {name: _class_prompts(model, tokenizer, recipe, name) for name in recipe.classes}
    del model
    return prompts


def _class_prompts(model, tokenizer, recipe: Recipe, name: str) -> list[str]:
    import torch

    expansion = recipe.prompt_expansion
    inputs = _encode(tokenizer, expansion.instruction.format(label=recipe.label_text(name))).to(model.device)
    found: dict[str, None] = {}
    devices = [model.device] if model.device.type == "cuda" else []
    for attempt in range(expansion.attempts):
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(derive_seed(recipe.seed, "prompt-expansion", name, attempt))
            output = model.generate(
                **inputs,
                do_sample=True,
                temperature=expansion.temperature,
                max_new_tokens=expansion.max_new_tokens,
                num_return_sequences=expansion.per_class - len(found),
                pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
            )
        for sequence in output[:, inputs["input_ids"].shape[1] :]:
            if text := clean_prompt(tokenizer.decode(sequence, skip_special_tokens=True)):
                found.setdefault(text)
        if len(found) >= expansion.per_class:
            break
    if not found:
        raise ExpansionFailed(
            f"prompt_expansion: {expansion.model!r} wrote no usable prompt for class {name!r} in "
            f"{expansion.attempts} attempts; raise attempts or max_new_tokens, or change the instruction"
        )
    if len(found) < expansion.per_class:
        log.warning("prompt expansion: %d of %d distinct prompts for class %r", len(found), expansion.per_class, name)
    return list(found)[: expansion.per_class]


def _encode(tokenizer, instruction: str):
    """The instruction as the model expects it: through its chat template where it has one."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": instruction}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
    return tokenizer(instruction, return_tensors="pt")


def clean_prompt(text: str) -> str:
    """The first line of what the model wrote, as one prompt: visible characters only (no controls, no
    replacement characters from cut bytes), spaces collapsed, quotes trimmed, at most ``MAX_TEXT_CHARS``."""
    line = re.sub(r"\s+", " ", next((part for part in text.splitlines() if part.strip()), ""))
    visible = "".join(c for c in line if c != "\ufffd" and unicodedata.category(c) not in _UNPRINTABLE)
    return re.sub(r" +", " ", visible).strip().strip("\"'“”").strip()[:MAX_TEXT_CHARS].strip()
