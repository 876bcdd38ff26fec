"""The recipe's checks that read several keys at once: templates against their variables, prompt counts, the
size of the plan, the prompt partition against the splits, the prompt-expansion lock against the classes, and the
filters and quality settings against the scorers.

They read a ``Parts``: what those checks need, taken from a validated recipe or, when validation failed, from each
key that validated on its own (``None`` where it did not), so one run lists every problem
(``builders.recipe.parse_recipe``).
"""

from __future__ import annotations

from dataclasses import dataclass

from builders.limits import MAX_IMAGES, MAX_PROMPTS, MAX_PROMPTS_PER_CLASS, MAX_TEXT_CHARS
from builders.prompts import ClassPrompts, expansion_count, longest_expansion, template_fields
from eval.filters import FilterSettings
from eval.quality import QualitySettings, quality_problems
from eval.scorers import ScoringSettings
from synthcore.columns import DROPPED_SUFFIX
from synthcore.yamlfile import key_path, short_repr


@dataclass(frozen=True)
class Parts:
    """What the checks across keys read; ``None`` marks a key that did not validate, whose checks are skipped."""

    templates: list[tuple[str, str]] | None  # the recipe's own templates (key path, template), checked once
    classes: list[ClassPrompts] | None
    splits: dict[str, int] | None
    prompt_disjoint: bool | None
    prompt_partition: dict[str, float] | None
    partition_usable: bool  # prompt_partition validated (it may be absent)
    filters: FilterSettings | None
    scoring: ScoringSettings | None
    quality: QualitySettings | None
    lonely_samples: list[str]  # classes whose own template_samples have no templates to draw from
    expansion_lock: dict[str, list[str]] | None  # prompt_expansion.prompts, as recorded
    per_class: int  # prompt_expansion.per_class (0 without prompt expansion)


def problems(parts: Parts) -> list[str]:
    """Every problem that needs more than one key, in one list."""
    found = cross_key_problems(parts) + _expansion_problems(parts)
    if parts.scoring is not None and parts.filters is not None and parts.quality is not None:
        found += quality_problems(parts.scoring, parts.filters, parts.quality)
    return found


def _expansion_problems(parts: Parts) -> list[str]:
    """A class's ``template_samples`` needs templates to draw from; recorded expanded prompts (a lock) name every
    class and only them, at most ``per_class`` each."""
    found = [
        f"{key_path(('classes', name, 'template_samples'))}: the class has no templates to draw from"
        for name in parts.lonely_samples
    ]
    lock = parts.expansion_lock
    if lock is None or parts.classes is None:
        return found
    names = [spec.name for spec in parts.classes]
    where = "prompt_expansion.prompts"
    return found + (
        [f"{where}: no prompts for class {short_repr(name)}" for name in names if name not in lock]
        + [f"{where}.{key_path((name,))}: not a class" for name in lock if name not in names]
        + [
            f"{where}.{key_path((name,))}: {len(prompts)} prompts; per_class is {parts.per_class}"
            for name, prompts in lock.items()
            if len(prompts) > parts.per_class
        ]
    )


def cross_key_problems(parts: Parts) -> list[str]:
    """Every problem that needs more than one key: templates and their variables, prompt counts, the size of the
    plan, the prompt partition, and the filters against the scorers."""
    problems = [p for where, t in parts.templates or [] for p in _template_problems(t, where)]
    counts: dict[str, int] = {}
    for spec in parts.classes or []:
        class_problems, count = _class_prompt_problems(spec)
        problems += class_problems
        if count is not None and not class_problems:
            counts[spec.name] = count
    total = sum(counts.values())
    if total > MAX_PROMPTS:
        problems.append(
            f"classes: the {len(counts):,} classes expand to {total:,} prompts in all; at most {MAX_PROMPTS:,}"
        )
        counts = {}  # too many to partition
    problems += _plan_size_problems(parts)
    problems += _partition_problems(parts, counts)
    return problems + _filter_problems(parts)


def _template_problems(template: str, where: str) -> list[str]:
    try:
        fields = template_fields(template)
    except ValueError as err:
        return [f"{where}: {err} in {short_repr(template)}"]
    return (
        [f"{where}: empty or positional field '{{}}' in {short_repr(template)}; name every field"]
        if "" in fields
        else []
    )


def _class_prompt_problems(spec: ClassPrompts) -> tuple[list[str], int | None]:
    """One class's template problems and how many prompts it has (None when that cannot be told)."""
    if spec.templates is None or spec.variables is None:
        return [], None
    malformed = [p for where, t in spec.templates for p in _template_problems(t, where)]
    undefined = [
        f"{where}: variable {{{field}}} is not defined for class {short_repr(spec.name)} (define it in 'variables' "
        f"or '{key_path(('classes', spec.name, 'variables'))}')"
        for where, template in spec.templates
        if not _template_problems(template, where)
        for field in template_fields(template)
        if field not in spec.variables
    ]
    if malformed or undefined:  # the recipe's own malformed templates are reported once, not for every class
        return (malformed if spec.own_templates else []) + undefined, None
    if spec.literal is None:  # its prompts did not validate: nothing to count
        return [], None
    counts = [(where, template, expansion_count(template, spec.variables)) for where, template in spec.templates]
    combinations = sum(count for _, _, count in counts)
    total = len(spec.literal) + (combinations if spec.samples is None else min(combinations, spec.samples))
    total += spec.expanding
    if total > MAX_PROMPTS_PER_CLASS:
        where, template, count = max(counts, key=lambda c: c[2])
        sizes = " × ".join(f"{field} {len(spec.variables[field]):,}" for field in template_fields(template))
        return [
            f"{key_path(('classes', spec.name))}: its templates expand to {total:,} prompts ({where}: {sizes}); at "
            f"most {MAX_PROMPTS_PER_CLASS:,} per class: use fewer variable values, or draw some with "
            "'template_samples'"
        ], None
    problems = [
        f"{where}: expands to prompts of up to {longest:,} characters for class {short_repr(spec.name)}; at most "
        f"{MAX_TEXT_CHARS:,}"
        for where, template in spec.templates
        if (longest := longest_expansion(template, spec.variables)) > MAX_TEXT_CHARS
    ]
    if not problems and total == 0:
        where = key_path(("classes", spec.name))
        problems = [f"{where}: has no prompts (give 'prompts', or 'templates' with their 'variables')"]
    return problems, total


def _plan_size_problems(parts: Parts) -> list[str]:
    if parts.classes is None or parts.splits is None:
        return []
    per_class = sum(parts.splits.values())
    if len(parts.classes) * per_class <= MAX_IMAGES:
        return []
    return [
        f"splits: {len(parts.classes):,} classes × {per_class:,} images each = {len(parts.classes) * per_class:,} "
        f"images; at most {MAX_IMAGES:,} in one recipe"
    ]


def _partition_problems(parts: Parts, counts: dict[str, int]) -> list[str]:
    """``prompt_partition`` names every split and only them, and gives each split of each class a prompt."""
    if parts.splits is None or parts.prompt_disjoint is None or not parts.partition_usable:
        return []
    weights = parts.prompt_partition
    if weights is not None and not parts.prompt_disjoint:
        return ["prompt_partition: only used with prompt_disjoint: true"]
    if weights is not None and weights.keys() != parts.splits.keys():
        missing = [s for s in parts.splits if s not in weights]
        extra = [s for s in weights if s not in parts.splits]
        return [f"prompt_partition: no share for split {short_repr(s)}" for s in missing] + [
            f"prompt_partition.{key_path((s,))}: not a split (the splits are {', '.join(parts.splits)})" for s in extra
        ]
    if not parts.prompt_disjoint:
        return []
    return [
        f"{key_path(('classes', spec.name))}: prompt_disjoint needs at least one distinct prompt per split "
        f"({len(parts.splits)} splits) but the class has {count}"
        for spec in parts.classes or []
        if spec.name in counts and (count := spec.prompt_count()) < len(parts.splits)
    ]


def _filter_problems(parts: Parts) -> list[str]:
    """Filters read score columns: each needs its scorer, and their outputs must not collide with splits."""
    filters, scoring = parts.filters, parts.scoring
    if filters is None or scoring is None:
        return []
    problems = [
        f"filters.{rule.key}: reads the {scorer} scores, but scoring.{scorer}.enabled is false"
        for scorer, rule, _ in filters.rules()
        if not getattr(scoring, scorer).enabled
    ]
    if filters.on_fail == "regenerate" and not filters.rules():
        problems.append(
            "filters.on_fail: 'regenerate' needs a score threshold to regenerate against (min_* or require_*)"
        )
    if filters.require_imagenet_match and parts.classes and all(c.has_imagenet is False for c in parts.classes):
        problems.append("filters.require_imagenet_match: no class has imagenet_classes, so it would keep every row")
    if filters.active and filters.dropped == "split":
        problems += [
            f"splits.{name}: with filters.dropped 'split', the dropped rows of split "
            f"{name.removesuffix(DROPPED_SUFFIX)!r} go to {name!r}"
            for name in parts.splits or {}
            if name.endswith(DROPPED_SUFFIX) and name.removesuffix(DROPPED_SUFFIX) in parts.splits
        ]
    return problems
