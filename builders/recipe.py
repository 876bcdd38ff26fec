"""The recipe: one typed, validated model of everything a build needs.

A recipe is validated whole when it is loaded, before any model is touched: unknown keys are errors, and every
problem is collected and reported together with its key path (``classes.fox.prompts[0]: ...``) and the file it
came from. The checks that read several keys at once (templates against variables, prompts per split, filters
against scorers) run in the same pass even when other keys are wrong, so one run lists every problem. Everything
is bounded before it is expanded: names, texts, sizes, counts and seeds have upper bounds, and templates are
counted before they expand. Everything downstream receives a ``Recipe`` object, never a dict.
"""

from __future__ import annotations

import collections
import difflib
import hashlib
import itertools
import json
import math
import re
import string
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    field_validator,
    model_validator,
)

from builders.formats.choice import DEFAULT_FORMATS, FormatNames, Formats
from builders.schedulers import SCHEDULER_NAMES, is_known_scheduler
from eval.filters import FilterSettings
from eval.quality import QualitySettings, quality_problems
from eval.scorers import ScoringSettings
from eval.scorers.base import ScoringTask
from eval.scorers.resnet50 import imagenet_categories
from synthcore.columns import DROPPED_SUFFIX
from synthcore.model_refs import TINY_RANDOM, check_model_ref
from synthcore.yamlfile import (
    PROBLEM_JOINER,
    ConfigFileError,
    key_path,
    load_yaml,
    read_text,
    short_repr,
    validate,
)

DEFAULT_GENERATOR = "stable-diffusion-v1-5/stable-diffusion-v1-5"
DEFAULT_SAFETY_CHECKER = "CompVis/stable-diffusion-safety-checker"

# Upper bounds: a recipe of a few lines must not ask for more than a machine can plan, and each names its key.
MAX_NAME_CHARS = 100  # dataset, class and split names (a dataset name names a directory, a class a row id)
MAX_TEXT_CHARS = 1_000  # one prompt (expanded templates included), negative prompt, label text, template
MAX_DESCRIPTION_CHARS = 10_000
MAX_IMAGE_SIDE = 4096
MAX_STEPS = 1000
MAX_BATCH_SIZE = 1024
MAX_IMAGES_PER_PROMPT = 100_000
MAX_REGENERATIONS = 100
MAX_SHARD_SIZE = 100_000
MAX_SEED = 2**63 - 1
MAX_CLASSES = 100_000
MAX_IMAGES = 1_000_000_000  # per split and class, and in the whole plan (planning is arithmetic; this bounds the rest)
# Template expansion is counted before it happens (the product of its variables' lengths). A recipe that needs
# more prompts than this per class must shrink its variables.
MAX_PROMPTS_PER_CLASS = 100_000
MAX_PROMPTS = 1_000_000  # all classes together
MAX_GUIDANCE_VALUES = 64  # one guidance sweep

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_SPLIT_NAME = re.compile(r"[A-Za-z0-9_]+")
# Unicode categories refused in class names: controls, format characters (zero-width joiners, direction marks),
# line and paragraph separators, surrogates, private use and unassigned code points.
_FORBIDDEN_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


class RecipeError(ConfigFileError):
    """A recipe that cannot be used, with every problem found and where it is."""

    kind = "recipe"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


NonEmptyStr = Annotated[str, Field(min_length=1)]
Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT_CHARS)]
OptionalText = Annotated[str, Field(max_length=MAX_TEXT_CHARS)]


def _variable_name(name: str) -> str:
    if not name.isidentifier():
        raise ValueError(f"variable name {short_repr(name)} must be a plain name (letters, digits and '_')")
    return name


Variables = dict[Annotated[str, AfterValidator(_variable_name)], list[Text]]


def _guidance_setting(value: Any) -> float | list[float]:
    """One guidance value, or a guidance sweep: a list of 1 to ``MAX_GUIDANCE_VALUES`` values, cycled over each
    class's images (``builders.plan``), each image's recorded in its row. One check for both forms, so a wrong value
    gets one message, not one per form."""
    if not isinstance(value, list):
        return _guidance_value(value, "")
    if not 1 <= len(value) <= MAX_GUIDANCE_VALUES:
        raise ValueError(f"a guidance sweep takes 1 to {MAX_GUIDANCE_VALUES} values, got {len(value)}")
    return [_guidance_value(item, f"value [{i}]: ") for i, item in enumerate(value)]


def _guidance_value(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}expected a number, or a list of numbers (a sweep), got {short_repr(value)}")
    if not math.isfinite(value):
        raise ValueError(f"{where}Input should be a finite number (got {value})")
    if value < 0:
        raise ValueError(f"{where}Input should be greater than or equal to 0 (got {value})")
    return float(value)


GuidanceSetting = Annotated[float | list[float], PlainValidator(_guidance_setting)]
TemplateSamples = Annotated[int, Field(ge=1, le=MAX_PROMPTS_PER_CLASS)]


def _imagenet_category(name: str) -> str:
    """An ImageNet class name exactly as torchvision's metadata spells it (read locally, nothing downloaded)."""
    categories = imagenet_categories()
    if name in categories:
        return name
    close = [c for c in categories if c.casefold() == name.casefold()] or difflib.get_close_matches(
        name[:MAX_NAME_CHARS], categories, n=3
    )
    hint = (
        f"; did you mean {' or '.join(map(repr, close))}?"
        if close
        else " (see torchvision's ResNet50_Weights.DEFAULT.meta['categories'])"
    )
    raise ValueError(f"{short_repr(name)} is not an ImageNet class name{hint}")


ImageNetClass = Annotated[NonEmptyStr, AfterValidator(_imagenet_category)]
ModelRef = Annotated[NonEmptyStr, AfterValidator(check_model_ref)]
# A branch, tag or commit: no spaces or characters that would break the card's links to it.
Revision = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^\s()\[\]<>`\\]+$")]


class LoraSettings(_Strict):
    """A LoRA adapter fused into the generator's weights before anything runs."""

    id: NonEmptyStr
    weight_name: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    scale: float = Field(default=1.0, ge=-100, le=100)

    @field_validator("id")
    @classmethod
    def _existing_local_path(cls, value: str) -> str:
        if value == TINY_RANDOM:
            raise ValueError(f"there is no {TINY_RANDOM} LoRA; expected a Hub id, a local directory or a weights file")
        return check_model_ref(value)


class ModelSettings(_Strict):
    """The generator and how it runs. Keys a recipe leaves out may take its family's defaults
    (``builders.generators.resolve_family``)."""

    id: NonEmptyStr = DEFAULT_GENERATOR
    revision: Revision | None = None
    pipeline: Annotated[str, Field(min_length=1, max_length=100)] | None = None  # from the model's model_index.json
    loras: list[LoraSettings] = Field(default=[], max_length=16)
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    scheduler: str = "default"
    safety_checker: bool = True
    safety_checker_id: NonEmptyStr = DEFAULT_SAFETY_CHECKER  # for pipelines that ship no checker of their own
    on_flagged: Literal["regenerate", "drop"] = "regenerate"
    max_regenerations: int = Field(default=3, ge=0, le=MAX_REGENERATIONS)
    channels_last: bool = False
    compile: bool = False
    attention: Literal["sdpa", "default"] = "sdpa"
    max_sequence_length: int | None = Field(default=None, ge=1, le=8192)  # T5/Gemma prompt tokens, where there is one
    text_encoder_dtype: Literal["float32", "float16", "bfloat16"] | None = None  # None: model.dtype
    cpu_offload: bool = False
    vae_slicing: bool = False
    vae_tiling: bool = False

    @field_validator("scheduler")
    @classmethod
    def _known_scheduler(cls, value: str) -> str:
        if not is_known_scheduler(value):
            raise ValueError(
                f"unknown scheduler {short_repr(value)}; expected 'default', one of {', '.join(SCHEDULER_NAMES)}, "
                "or a diffusers scheduler class name such as 'DPMSolverMultistepScheduler'"
            )
        return value

    @field_validator("id", "safety_checker_id")
    @classmethod
    def _existing_local_path(cls, value: str) -> str:
        return check_model_ref(value)


class GenerationSettings(_Strict):
    """Parameters of every pipeline call. Defaults are the reference exercise's."""

    guidance_scale: GuidanceSetting = 7.5
    num_inference_steps: int = Field(default=50, ge=1, le=MAX_STEPS)
    height: int = Field(default=512, ge=8, le=MAX_IMAGE_SIDE)
    width: int = Field(default=512, ge=8, le=MAX_IMAGE_SIDE)
    batch_size: int = Field(default=8, ge=1, le=MAX_BATCH_SIZE)
    images_per_prompt: int = Field(default=2, ge=1, le=MAX_IMAGES_PER_PROMPT)

    @field_validator("height", "width")
    @classmethod
    def _multiple_of_8(cls, value: int) -> int:
        if value % 8:
            raise ValueError(f"must be a multiple of 8 (the VAE downsamples by 8), got {value}")
        return value


class ClassSpec(_Strict):
    """One class: literal prompts and/or templates expanded over variables, plus optional overrides."""

    prompts: list[Text] = []
    templates: list[Text] | None = None
    variables: Variables = {}
    negative_prompt: OptionalText | None = None
    guidance_scale: GuidanceSetting | None = None
    template_samples: TemplateSamples | None = None
    label_text: Text | None = None
    imagenet_classes: list[ImageNetClass] = []


DEFAULT_EXPANSION_INSTRUCTION = (
    "Write one short, vivid description of a photo of a {label}, varying the setting, light and viewpoint:"
)


class PromptExpansionSettings(_Strict):
    """A local language model writes ``per_class`` more prompts for every class, once (``builders.expansion``);
    the build keeps them in ``<output>/prompts.lock.yaml`` and records them here, in ``prompts``, so the plan is a
    function of the recipe and its lock and every rebuild is identical."""

    model: ModelRef
    revision: Revision | None = None
    per_class: int = Field(ge=1, le=MAX_PROMPTS_PER_CLASS)
    instruction: Text = DEFAULT_EXPANSION_INSTRUCTION
    max_new_tokens: int = Field(default=40, ge=1, le=1024)
    temperature: float = Field(default=1.0, gt=0, le=10)
    attempts: int = Field(default=4, ge=1, le=100)  # generation rounds per class to find per_class distinct prompts
    prompts: dict[str, list[Text]] | None = None  # the lock: written by the build, read back on rebuilds

    @field_validator("instruction")
    @classmethod
    def _label_field_only(cls, value: str) -> str:
        fields = template_fields(value)
        if any(field != "label" for field in fields):
            raise ValueError(f"the only field an instruction takes is {{label}} (the class's label text), got {fields}")
        return value

    def settings(self) -> dict[str, Any]:
        """What decides the generated prompts (everything but the prompts themselves): what a lock must match."""
        return self.model_dump(mode="json", exclude={"prompts"})


class OutputSettings(_Strict):
    """How images are encoded and how many go in one shard (the unit of work, resume and upload)."""

    image_format: Literal["png", "webp", "jpeg"] = "png"
    png_compress_level: int = Field(default=6, ge=0, le=9)
    quality: int = Field(default=95, ge=1, le=100)
    shard_size: int = Field(default=256, ge=1, le=MAX_SHARD_SIZE)


class HubSettings(_Strict):
    repo_id: str | None = None
    private: bool = False
    push_during_build: bool = False  # upload finished shards to building/ while the build runs (synthcore.hub)
    upload_interval: float = Field(default=60.0, gt=0)  # seconds between two such uploads
    formats: FormatNames = ()  # formats uploaded beside Parquet, each into its own folder (builders.formats)


class Recipe(_Strict):
    """A whole build: what to generate, how, how to score it, and where it goes."""

    name: str
    description: Annotated[str, Field(max_length=MAX_DESCRIPTION_CHARS)] = ""
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    model: ModelSettings = ModelSettings()
    generation: GenerationSettings = GenerationSettings()
    negative_prompt: OptionalText = ""
    templates: list[Text] = []
    variables: Variables = {}
    template_samples: TemplateSamples | None = None
    classes: dict[str, ClassSpec]
    splits: dict[str, Annotated[int, Field(gt=0, le=MAX_IMAGES)]]
    prompt_disjoint: bool = False
    prompt_partition: dict[str, Annotated[float, Field(gt=0)]] | None = None
    prompt_expansion: PromptExpansionSettings | None = None
    scoring: ScoringSettings = ScoringSettings()
    filters: FilterSettings = FilterSettings()
    quality: QualitySettings = QualitySettings()
    output: OutputSettings = OutputSettings()
    formats: Formats = DEFAULT_FORMATS  # written beside data/ (builders.formats); Parquet always is
    hub: HubSettings = HubSettings()

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not _SAFE_NAME.fullmatch(value) or ".." in value or len(value) > MAX_NAME_CHARS:
            raise ValueError(
                f"{short_repr(value)} is not a safe dataset name: use at most {MAX_NAME_CHARS} letters, digits, "
                "'.', '_' and '-', starting with a letter or digit"
            )
        return value

    @field_validator("classes")
    @classmethod
    def _class_names(cls, value: dict[str, ClassSpec]) -> dict[str, ClassSpec]:
        if not value:
            raise ValueError("needs at least one class")
        if len(value) > MAX_CLASSES:
            raise ValueError(f"{len(value):,} classes; at most {MAX_CLASSES:,}")
        problems = [p for p in map(_class_name_problem, value) if p] + _look_alike_problems(list(value))
        if problems:
            raise ValueError(PROBLEM_JOINER.join(problems))
        return value

    @field_validator("splits")
    @classmethod
    def _split_names(cls, value: dict[str, int]) -> dict[str, int]:
        if not value:
            raise ValueError("needs at least one split")
        bad = [name for name in value if not _SPLIT_NAME.fullmatch(name) or len(name) > MAX_NAME_CHARS]
        if bad:
            raise ValueError(
                f"split names must be at most {MAX_NAME_CHARS} letters, digits and '_': "
                + ", ".join(map(short_repr, bad[:10]))
            )
        folded = collections.Counter(name.casefold() for name in value)
        same = [name for name in value if folded[name.casefold()] > 1]
        if same:  # their files would collide on a case-insensitive file system
            raise ValueError(f"split names must differ other than by case: {', '.join(same)}")
        return value

    @model_validator(mode="after")
    def _keys_agree(self) -> Recipe:
        problems = (
            _cross_key_problems(_Parts.of_recipe(self))
            + _expansion_problems(self)
            + quality_problems(self.scoring, self.filters, self.quality)
        )
        if problems:
            raise ValueError(PROBLEM_JOINER.join(problems))
        return self

    def without_hub(self) -> Recipe:
        """The recipe minus where it is pushed: what decides the dataset, and what a rebuild should start from."""
        return self.model_copy(update={"hub": HubSettings()})

    @property
    def class_names(self) -> list[str]:
        return list(self.classes)

    def scoring_task(self) -> ScoringTask:
        """What the scorers need to know about the classes."""
        return ScoringTask(
            class_names=tuple(self.class_names),
            label_texts=tuple(self.label_text(name) for name in self.class_names),
            imagenet_classes=tuple(tuple(spec.imagenet_classes) for spec in self.classes.values()),
        )

    def label_text(self, class_name: str) -> str:
        return self.classes[class_name].label_text or class_name

    def prompts_of(self, class_name: str) -> list[str]:
        """All prompts of a class: its literal prompts, then every template expanded over every combination."""
        return _class_parts(self, class_name).prompts()

    def prompt_shares(self) -> dict[str, float]:
        """Each split's share of every class's prompts under ``prompt_disjoint`` (default: equal shares)."""
        return _shares(self.splits, self.prompt_partition)

    def split_prompts(self, class_name: str) -> dict[str, list[str]]:
        """The prompts each split may use. With ``prompt_disjoint`` every prompt belongs to exactly one split,
        chosen from the prompt alone (see ``partition``): changing counts or adding prompts moves none."""
        prompts = self.prompts_of(class_name)
        if not self.prompt_disjoint:
            return {split: prompts for split in self.splits}
        return partition(prompts, self.prompt_shares(), self.seed, class_name)

    def negative_prompt_of(self, class_name: str) -> str:
        override = self.classes[class_name].negative_prompt
        return self.negative_prompt if override is None else override

    def guidance_scale_of(self, class_name: str) -> float | list[float]:
        """The class's guidance setting as written: one value, or a sweep."""
        override = self.classes[class_name].guidance_scale
        return self.generation.guidance_scale if override is None else override

    def guidance_scales_of(self, class_name: str) -> tuple[float, ...]:
        """The guidance values the class's images cycle through (one when the recipe sweeps none)."""
        setting = self.guidance_scale_of(class_name)
        return tuple(setting) if isinstance(setting, list) else (setting,)

    def guidance_settings(self) -> list[tuple[str, float]]:
        """Every guidance value the recipe gives, with its key path (``classes.fox.guidance_scale[1]``), for the
        checks a family makes of each value. ``generation.guidance_scale`` is listed only when the recipe sets it."""
        given = [(("generation", "guidance_scale"), self.generation.guidance_scale)] * (
            "guidance_scale" in self.generation.model_fields_set
        ) + [(("classes", name, "guidance_scale"), spec.guidance_scale) for name, spec in self.classes.items()]
        return [
            (key_path((*where, i)), value) if isinstance(setting, list) else (key_path(where), setting)
            for where, setting in given
            if setting is not None
            for i, value in enumerate(setting if isinstance(setting, list) else [setting])
        ]


def _expansion_problems(recipe: Recipe) -> list[str]:
    """A class's ``template_samples`` needs templates to draw from; recorded expanded prompts (a lock) name every
    class and only them, at most ``per_class`` each."""
    problems = [
        f"{key_path(('classes', name, 'template_samples'))}: the class has no templates to draw from"
        for name, spec in recipe.classes.items()
        if spec.template_samples is not None and not (recipe.templates if spec.templates is None else spec.templates)
    ]
    settings = recipe.prompt_expansion
    if settings is None or settings.prompts is None:
        return problems
    where = "prompt_expansion.prompts"
    return problems + (
        [f"{where}: no prompts for class {short_repr(name)}" for name in recipe.classes if name not in settings.prompts]
        + [f"{where}.{key_path((name,))}: not a class" for name in settings.prompts if name not in recipe.classes]
        + [
            f"{where}.{key_path((name,))}: {len(prompts)} prompts; per_class is {settings.per_class}"
            for name, prompts in settings.prompts.items()
            if len(prompts) > settings.per_class
        ]
    )


# -- names ---------------------------------------------------------------------------------------------------------
def _class_name_problem(name: str) -> str | None:
    quoted = short_repr(name)
    if not name.strip() or name != name.strip():
        return f"class name {quoted} is empty or has leading/trailing spaces"
    if len(name) > MAX_NAME_CHARS:
        return f"class name {quoted} is longer than {MAX_NAME_CHARS} characters"
    if any(unicodedata.category(char) in _FORBIDDEN_CATEGORIES for char in name):
        return (
            f"class name {quoted} holds a control, format or invisible character (a zero-width joiner, a direction "
            "mark...): write it with visible characters only"
        )
    if "/" in name or "\\" in name or name.startswith("."):
        return f"class name {quoted} may not contain '/' or '\\', nor start with '.'"
    return None


def comparable_name(name: str) -> str:
    """The form two names are compared in: NFKC-normalized and case-folded, so look-alikes (``café`` composed or
    not, fullwidth ``ｆｏｘ``, ``Fox``) are the same name."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())


def _look_alike_problems(names: list[str]) -> list[str]:
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(comparable_name(name), []).append(name)
    return [
        f"class names {', '.join(map(short_repr, group))} are the same name once normalized (Unicode NFKC, case "
        "folded): give each class a distinct name"
        for group in groups.values()
        if len(group) > 1
    ]


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
    sizes = [_combinations([template], variables) for template in templates]
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


def _combinations(templates: list[str], variables: dict[str, list[str]]) -> int:
    return sum(math.prod(len(variables[field]) for field in template_fields(template)) for template in templates)


def _expansion_count(template: str, variables: dict[str, list[str] | None]) -> int | None:
    """How many prompts the template expands to, counted without expanding (None if a variable is unreadable)."""
    lengths = [variables[f] for f in template_fields(template)]
    return None if any(v is None for v in lengths) else math.prod(len(v) for v in lengths)


def _longest_expansion(template: str, variables: dict[str, list[str] | None]) -> int:
    """The length of the template's longest prompt, from its literal text and each field's longest value."""
    length = 0
    for literal, field, _, _ in string.Formatter().parse(template):
        length += len(literal.replace("{{", "{").replace("}}", "}"))
        if field is not None:
            length += max(map(len, variables.get(field) or [""]), default=0)
    return length


# -- prompt-disjoint splits ----------------------------------------------------------------------------------------
def _shares(splits: dict[str, int], partition_weights: dict[str, float] | None) -> dict[str, float]:
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


# -- checks that read several keys ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class _ClassParts:
    """What decides one class's prompts. ``None`` marks a part the data does not give in a usable form (a recipe
    that failed validation): the checks that need it are skipped, the validation error already says what is wrong."""

    name: str
    literal: list[str] | None
    templates: list[tuple[str, str]] | None  # (key path, template) of every template the class uses
    own_templates: bool  # its own 'templates', or the recipe's
    variables: dict[str, list[str] | None] | None  # the recipe's variables merged with the class's own
    has_imagenet: bool
    samples: int | None = None  # template_samples: combinations drawn instead of expanding them all
    seed: int = 0
    expanded: tuple[str, ...] = ()  # prompts written by the language model (prompt_expansion's lock)
    expanding: int = 0  # how many it writes per class, counted before they exist

    def prompts(self) -> list[str]:
        templates = [template for _, template in self.templates]
        if self.samples is not None and self.samples < _combinations(templates, self.variables):
            generated = sample_templates(templates, self.variables, self.samples, self.seed, self.name)
        else:
            generated = [p for template in templates for p in expand_template(template, self.variables)]
        return list(dict.fromkeys([*self.literal, *generated, *self.expanded]))

    def prompt_count(self) -> int:
        """Its distinct prompts, the language model's counted before it has written them."""
        return len(self.prompts()) + (0 if self.expanded else self.expanding)


def _class_parts(recipe: Recipe, name: str) -> _ClassParts:
    spec = recipe.classes[name]
    own = spec.templates is not None
    return _ClassParts(
        name,
        spec.prompts,
        _keyed(spec.templates if own else recipe.templates, ("classes", name, "templates") if own else ("templates",)),
        own,
        {**recipe.variables, **spec.variables},
        bool(spec.imagenet_classes),
        recipe.template_samples if spec.template_samples is None else spec.template_samples,
        recipe.seed,
        tuple((expansion.prompts or {}).get(name, [])) if (expansion := recipe.prompt_expansion) else (),
        expansion.per_class if expansion else 0,
    )


def _keyed(templates: list[str] | None, where: tuple) -> list[tuple[str, str]] | None:
    return None if templates is None else [(key_path((*where, i)), t) for i, t in enumerate(templates)]


@dataclass(frozen=True)
class _Parts:
    """What the checks across keys read, from a validated recipe or, when validation failed, from the raw data
    as far as it is usable (``None`` where it is not)."""

    templates: list[tuple[str, str]] | None  # the recipe's own templates, checked once
    classes: list[_ClassParts] | None
    splits: dict[str, int] | None
    prompt_disjoint: bool | None
    prompt_partition: dict[str, float] | None
    partition_usable: bool
    filters: FilterSettings | None
    scoring: ScoringSettings | None

    @classmethod
    def of_recipe(cls, recipe: Recipe) -> _Parts:
        return cls(
            templates=_keyed(recipe.templates, ("templates",)),
            classes=[_class_parts(recipe, name) for name in recipe.classes],
            splits=recipe.splits,
            prompt_disjoint=recipe.prompt_disjoint,
            prompt_partition=recipe.prompt_partition,
            partition_usable=True,
            filters=recipe.filters,
            scoring=recipe.scoring,
        )

    @classmethod
    def of_data(cls, data: dict) -> _Parts:
        templates = _strings(data.get("templates", []))
        variables = _variables(data.get("variables", {}))
        classes = data.get("classes")
        partition_weights = data.get("prompt_partition")
        return cls(
            templates=_keyed(templates, ("templates",)),
            classes=[
                _raw_class_parts(name, spec, templates, variables, _raw_samples(data, spec), _raw_int(data, "seed"))
                for name, spec in classes.items()
            ]
            if isinstance(classes, dict)
            else None,
            splits=_typed_dict(data.get("splits"), int),
            prompt_disjoint=data.get("prompt_disjoint", False)
            if _is(data.get("prompt_disjoint", False), bool)
            else None,
            prompt_partition=_typed_dict(partition_weights, (int, float)),
            partition_usable=partition_weights is None or _typed_dict(partition_weights, (int, float)) is not None,
            filters=_settings(FilterSettings, data.get("filters", {})),
            scoring=_settings(ScoringSettings, data.get("scoring", {})),
        )


def _is(value: Any, kind: type | tuple[type, ...]) -> bool:
    """``isinstance``, where a bool is no number (as in strict validation)."""
    return isinstance(value, kind) and (kind is bool or not isinstance(value, bool))


def _strings(value: Any) -> list[str] | None:
    return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


def _typed_dict(value: Any, kind: type | tuple[type, ...]) -> dict | None:
    if not isinstance(value, dict) or not all(isinstance(k, str) and _is(v, kind) for k, v in value.items()):
        return None
    return value


def _variables(value: Any) -> dict[str, list[str] | None] | None:
    return {str(k): _strings(v) for k, v in value.items()} if isinstance(value, dict) else None


def _settings(model: type[BaseModel], value: Any) -> Any:
    try:
        return model.model_validate(value)
    except ValidationError:
        return None


def _raw_int(data: Any, key: str) -> int | None:
    value = data.get(key) if isinstance(data, dict) else None
    return value if _is(value, int) and value > 0 else None


def _raw_samples(data: dict, spec: Any) -> int | None:
    """``template_samples`` of a class as far as the raw data gives it (None where it is missing or unusable)."""
    own = _raw_int(spec, "template_samples")
    return own if own is not None else _raw_int(data, "template_samples")


def _raw_class_parts(
    name: Any, spec: Any, templates: list[str] | None, variables: dict | None, samples: int | None, seed: int | None
) -> _ClassParts:
    if not isinstance(spec, dict):
        return _ClassParts(str(name), None, None, False, None, False)
    own = spec.get("templates")
    own_variables = _variables(spec.get("variables", {}))
    return _ClassParts(
        str(name),
        _strings(spec.get("prompts", [])),
        _keyed(templates, ("templates",)) if own is None else _keyed(_strings(own), ("classes", name, "templates")),
        own is not None,
        None if variables is None or own_variables is None else {**variables, **own_variables},
        bool(spec.get("imagenet_classes")),
        samples,
        seed or 0,
    )


def _cross_key_problems(parts: _Parts) -> list[str]:
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


def _class_prompt_problems(spec: _ClassParts) -> tuple[list[str], int | None]:
    """One class's template problems and how many prompts it has (None when that cannot be told)."""
    if spec.templates is None or spec.variables is None or spec.literal is None:
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
    counts = [(where, template, _expansion_count(template, spec.variables)) for where, template in spec.templates]
    if any(count is None for _, _, count in counts):
        return [], None
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
        if (longest := _longest_expansion(template, spec.variables)) > MAX_TEXT_CHARS
    ]
    if not problems and total == 0:
        where = key_path(("classes", spec.name))
        problems = [f"{where}: has no prompts (give 'prompts', or 'templates' with their 'variables')"]
    return problems, total


def _plan_size_problems(parts: _Parts) -> list[str]:
    if parts.classes is None or parts.splits is None:
        return []
    per_class = sum(parts.splits.values())
    if len(parts.classes) * per_class <= MAX_IMAGES:
        return []
    return [
        f"splits: {len(parts.classes):,} classes × {per_class:,} images each = {len(parts.classes) * per_class:,} "
        f"images; at most {MAX_IMAGES:,} in one recipe"
    ]


def _partition_problems(parts: _Parts, counts: dict[str, int]) -> list[str]:
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


def _filter_problems(parts: _Parts) -> list[str]:
    """Filters read score columns: each needs its scorer, and their outputs must not collide with splits."""
    filters, scoring = parts.filters, parts.scoring
    if filters is None or scoring is None:
        return []
    problems = [
        f"filters.{rule.key}: reads the {scorer} scores, but scoring.{scorer}.enabled is false"
        for scorer, rule, _ in filters.rules()
        if not getattr(scoring, scorer).enabled
    ]
    if filters.require_imagenet_match and parts.classes is not None and not any(c.has_imagenet for c in parts.classes):
        problems.append("filters.require_imagenet_match: no class has imagenet_classes, so it would keep every row")
    if filters.active and filters.dropped == "split":
        problems += [
            f"splits.{name}: with filters.dropped 'split', the dropped rows of split "
            f"{name.removesuffix(DROPPED_SUFFIX)!r} go to {name!r}"
            for name in parts.splits or {}
            if name.endswith(DROPPED_SUFFIX) and name.removesuffix(DROPPED_SUFFIX) in parts.splits
        ]
    return problems


def parse_recipe(text: str, source: str = "<recipe>") -> Recipe:
    """Parse YAML text into a validated recipe, or raise one RecipeError listing every problem: those of single
    keys and those across keys together, even when the first kind stops pydantic before the second."""
    data = load_yaml(text, source, RecipeError)
    try:
        return validate(Recipe, data, source, RecipeError, "recipe")
    except RecipeError as err:
        more = _cross_key_problems(_Parts.of_data(data)) if isinstance(data, dict) else []
        more = [p for p in more if p not in err.problems]
        if not more:
            raise
        raise RecipeError(source, [*err.problems, *more]) from None


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file."""
    return parse_recipe(read_text(Path(path), RecipeError), str(path))


def recipe_to_yaml(recipe: Recipe) -> str:
    """The recipe as YAML with every default made explicit, so a stored copy rebuilds the same dataset."""
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
