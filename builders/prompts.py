"""The prompt language of a recipe: templates and their variables, drawing template samples, and the
prompt-disjoint partition of a class's prompts among the splits.

Pure functions of their arguments (no recipe object here): the recipe (``builders.recipe``) validates with them,
its cross-key checks (``builders.recipe_checks``) count with them, and the plan (``builders.plan``) reads the
prompts they produce.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import math
import string
from dataclasses import dataclass

from synthcore.yamlfile import short_repr


# -- templates -----------------------------------------------------------------------------------------------------
def template_fields(template: str) -> list[str]:
    """The template's field names, in order, each once; ``ValueError`` for a template that is not plain:
    malformed braces, or a field that is not a bare name (no format spec, conversion, index or attribute)."""
    fields = []
    for _, field, spec, conversion in string.Formatter().parse(template):
        if field is None:
            continue
        if not field.isidentifier() or spec or conversion:
            shown = "{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            raise ValueError(
                f"field {short_repr(shown)} is not a plain {{name}} field (no format spec, conversion, index or "
                "attribute; write '{{' and '}}' for literal braces)"
            )
        fields.append(field)
    return list(dict.fromkeys(fields))


def expand_template(template: str, variables: dict[str, list[str]]) -> list[str]:
    """Every combination of the template's variables, in the order the variables appear in the template."""
    fields = template_fields(template)
    return [template.format(**dict(zip(fields, combo))) for combo in itertools.product(*(variables[f] for f in fields))]


def sample_templates(
    templates: list[str], variables: dict[str, list[str]], count: int, seed: int, class_name: str
) -> list[str]:
    """``count`` distinct combinations (of at least as many) of the templates' variables, in the order drawn.

    Every combination has an index: the templates' combinations one template after another, each template's in
    ``expand_template``'s order (a mixed-radix number, its last field fastest). Draw ``d`` is SHA-256 of (seed,
    class, d) modulo the number of combinations; an index drawn before is drawn again. Nothing is expanded: time
    and memory are O(count) (O(count · log count) draws at worst), whether there are 10^3 or 10^30 combinations,
    and the draws depend on the recipe's seed and the class alone."""
    sizes = [combinations([template], variables) for template in templates]
    total = sum(sizes)
    head = f"[{json.dumps('template-sample')}, {seed}, {json.dumps(class_name, ensure_ascii=False)}, "
    chosen: dict[int, None] = {}
    draw = 0
    while len(chosen) < min(count, total):
        digest = hashlib.sha256(f"{head}{draw}]".encode()).digest()
        chosen.setdefault(int.from_bytes(digest, "big") % total)
        draw += 1
    return [_combination(templates, sizes, variables, index) for index in chosen]


def _combination(templates: list[str], sizes: list[int], variables: dict[str, list[str]], index: int) -> str:
    """The ``index``-th combination of ``sample_templates``' numbering, decoded without expanding any other."""
    position = 0
    while index >= sizes[position]:
        index -= sizes[position]
        position += 1
    template, values = templates[position], {}
    for field in reversed(template_fields(template)):
        index, digit = divmod(index, len(variables[field]))
        values[field] = variables[field][digit]
    return template.format(**values)


def combinations(templates: list[str], variables: dict[str, list[str]]) -> int:
    return sum(math.prod(len(variables[field]) for field in template_fields(template)) for template in templates)


def expansion_count(template: str, variables: dict[str, list[str]]) -> int:
    """How many prompts the template expands to, counted without expanding."""
    return math.prod(len(variables[field]) for field in template_fields(template))


def longest_expansion(template: str, variables: dict[str, list[str]]) -> int:
    """The length of the template's longest prompt, from its literal text and each field's longest value."""
    length = 0
    for literal, field, _, _ in string.Formatter().parse(template):
        length += len(literal.replace("{{", "{").replace("}}", "}"))
        if field is not None:
            length += max(map(len, variables[field]), default=0)
    return length


# -- prompt-disjoint splits ----------------------------------------------------------------------------------------
def split_shares(splits: dict[str, int], partition_weights: dict[str, float] | None) -> dict[str, float]:
    """Each split's share of a class's prompts under ``prompt_disjoint``: its weight over their sum (equal shares
    when the recipe gives no ``prompt_partition``)."""
    weights = partition_weights or dict.fromkeys(splits, 1.0)
    return {split: weights[split] / sum(weights.values()) for split in splits}


def partition(prompts: list[str], shares: dict[str, float], seed: int, class_name: str) -> dict[str, list[str]]:
    """Each prompt's split, by weighted rendezvous hashing: every split draws a stable pseudo-random score for
    (seed, class, prompt, split), scaled by its share, and the prompt goes to the best. A prompt's split depends on
    nothing else, so changing counts moves no prompt, nor does adding prompts; changing one split's share moves
    prompts only to or from that split. Each split gets its share of the prompts on average.

    One exception keeps every split supplied: a split the hashes leave without any prompt (likely only with a
    few prompts per split) takes, from the splits holding more than one, the prompt with its best score; adding
    prompts can later send that one prompt back. Each split's prompts keep the class's order."""
    scores = {prompt: _split_scores(seed, class_name, prompt, shares) for prompt in prompts}
    chosen = {prompt: min(by_split, key=by_split.__getitem__) for prompt, by_split in scores.items()}
    for split in shares:
        sizes = collections.Counter(chosen.values())
        donors = [prompt for prompt in prompts if sizes[chosen[prompt]] > 1]
        if sizes[split] == 0 and donors:
            chosen[min(donors, key=lambda prompt: scores[prompt][split])] = split
    return {split: [prompt for prompt in prompts if chosen[prompt] == split] for split in shares}


def _split_scores(seed: int, class_name: str, prompt: str, shares: dict[str, float]) -> dict[str, float]:
    """Each split's score for a prompt (the lowest wins): ``-ln(u) / share`` with ``u`` in (0, 1) from SHA-256 of
    (seed, class, prompt, split), stable across Python versions and machines."""
    identity = hashlib.sha256(json.dumps(["prompt-partition", seed, class_name, prompt], ensure_ascii=False).encode())
    scores = {}
    for split, share in shares.items():
        digest = identity.copy()
        digest.update(split.encode())
        unit = (int.from_bytes(digest.digest()[:7], "big") + 0.5) / 2**56
        scores[split] = -math.log(unit) / share
    return scores


# -- one class's prompts ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClassPrompts:
    """What decides one class's prompts: the recipe's prompt spec of the class, which the plan expands and the
    recipe's checks count. ``None`` marks a part a recipe that failed validation does not give in a usable form:
    the checks that need it are skipped (the validation error already says what is wrong)."""

    name: str
    literal: list[str] | None
    templates: list[tuple[str, str]] | None  # (key path, template) of every template the class uses
    own_templates: bool  # its own 'templates', or the recipe's
    variables: dict[str, list[str]] | None  # the recipe's variables merged with the class's own
    has_imagenet: bool
    samples: int | None = None  # template_samples: combinations drawn instead of expanding them all
    seed: int = 0
    expanded: tuple[str, ...] = ()  # prompts written by the language model (prompt_expansion's lock)
    expanding: int = 0  # how many it writes per class, counted before they exist

    def prompts(self) -> list[str]:
        templates = [template for _, template in self.templates]
        if self.samples is not None and self.samples < combinations(templates, self.variables):
            generated = sample_templates(templates, self.variables, self.samples, self.seed, self.name)
        else:
            generated = [p for template in templates for p in expand_template(template, self.variables)]
        return list(dict.fromkeys([*self.literal, *generated, *self.expanded]))

    def prompt_count(self) -> int:
        """Its distinct prompts, the language model's counted before it has written them."""
        return len(self.prompts()) + (0 if self.expanded else self.expanding)
