"""The recipe: one typed, validated model of everything a build needs.

A recipe is validated whole when it is loaded, before any model is touched: unknown keys are errors, and every
problem is collected and reported together with its key path (``classes.fox.prompts[0]: ...``) and the file it
came from. Everything downstream receives a ``Recipe`` object, never a dict.
"""

from __future__ import annotations

import difflib
import itertools
import re
import string
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from builders.schedulers import SCHEDULER_NAMES, is_known_scheduler
from eval.filters import FilterSettings
from eval.scorers import ScoringSettings
from eval.scorers.base import ScoringTask
from eval.scorers.resnet50 import imagenet_categories
from synthcore.columns import DROPPED_SUFFIX
from synthcore.model_refs import check_model_ref
from synthcore.yamlfile import PROBLEM_JOINER, ConfigFileError, load_yaml, read_text, validate

DEFAULT_GENERATOR = "stable-diffusion-v1-5/stable-diffusion-v1-5"

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9_]+$")
_FORBIDDEN_IN_CLASS = re.compile(r"[/\\\x00-\x1f\x7f]")


class RecipeError(ConfigFileError):
    """A recipe that cannot be used, with every problem found and where it is."""

    kind = "recipe"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


NonEmptyStr = Annotated[str, Field(min_length=1)]


def _imagenet_category(name: str) -> str:
    """An ImageNet class name exactly as torchvision's metadata spells it (read locally, nothing downloaded)."""
    categories = imagenet_categories()
    if name in categories:
        return name
    close = [c for c in categories if c.casefold() == name.casefold()] or difflib.get_close_matches(
        name, categories, n=3
    )
    hint = (
        f"; did you mean {' or '.join(map(repr, close))}?"
        if close
        else " (see torchvision's ResNet50_Weights.DEFAULT.meta['categories'])"
    )
    raise ValueError(f"{name!r} is not an ImageNet class name{hint}")


ImageNetClass = Annotated[NonEmptyStr, AfterValidator(_imagenet_category)]


class ModelSettings(_Strict):
    """The Stable Diffusion generator and how it runs."""

    id: NonEmptyStr = DEFAULT_GENERATOR
    revision: str | None = None
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    scheduler: str = "default"
    safety_checker: bool = True
    on_flagged: Literal["regenerate", "drop"] = "regenerate"
    max_regenerations: int = Field(default=3, ge=0)
    channels_last: bool = False
    compile: bool = False
    attention: Literal["sdpa", "default"] = "sdpa"

    @field_validator("scheduler")
    @classmethod
    def _known_scheduler(cls, value: str) -> str:
        if not is_known_scheduler(value):
            raise ValueError(
                f"unknown scheduler {value!r}; expected 'default', one of {', '.join(SCHEDULER_NAMES)}, "
                "or a diffusers scheduler class name such as 'DPMSolverMultistepScheduler'"
            )
        return value

    @field_validator("id")
    @classmethod
    def _existing_local_path(cls, value: str) -> str:
        return check_model_ref(value)


class GenerationSettings(_Strict):
    """Parameters of every pipeline call. Defaults are the reference exercise's."""

    guidance_scale: float = Field(default=7.5, ge=0)
    num_inference_steps: int = Field(default=50, ge=1, le=1000)
    height: int = Field(default=512, ge=8)
    width: int = Field(default=512, ge=8)
    batch_size: int = Field(default=8, ge=1)
    images_per_prompt: int = Field(default=2, ge=1)

    @field_validator("height", "width")
    @classmethod
    def _multiple_of_8(cls, value: int) -> int:
        if value % 8:
            raise ValueError(f"must be a multiple of 8 (the VAE downsamples by 8), got {value}")
        return value


class ClassSpec(_Strict):
    """One class: literal prompts and/or templates expanded over variables, plus optional overrides."""

    prompts: list[NonEmptyStr] = []
    templates: list[NonEmptyStr] | None = None
    variables: dict[str, list[NonEmptyStr]] = {}
    negative_prompt: str | None = None
    guidance_scale: float | None = Field(default=None, ge=0)
    label_text: NonEmptyStr | None = None
    imagenet_classes: list[ImageNetClass] = []


class OutputSettings(_Strict):
    """How images are encoded and how many go in one shard (the unit of work, resume and upload)."""

    image_format: Literal["png", "webp", "jpeg"] = "png"
    png_compress_level: int = Field(default=6, ge=0, le=9)
    quality: int = Field(default=95, ge=1, le=100)
    shard_size: int = Field(default=256, ge=1)


class HubSettings(_Strict):
    repo_id: str | None = None
    private: bool = False


class Recipe(_Strict):
    """A whole build: what to generate, how, how to score it, and where it goes."""

    name: str
    description: str = ""
    seed: int = Field(default=0, ge=0)
    model: ModelSettings = ModelSettings()
    generation: GenerationSettings = GenerationSettings()
    negative_prompt: str = ""
    templates: list[NonEmptyStr] = []
    variables: dict[str, list[NonEmptyStr]] = {}
    classes: dict[str, ClassSpec]
    splits: dict[str, Annotated[int, Field(gt=0)]]
    prompt_disjoint: bool = False
    scoring: ScoringSettings = ScoringSettings()
    filters: FilterSettings = FilterSettings()
    output: OutputSettings = OutputSettings()
    hub: HubSettings = HubSettings()

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not _SAFE_NAME.match(value) or ".." in value:
            raise ValueError(
                f"{value!r} is not a safe dataset name: use letters, digits, '.', '_' and '-', starting with a "
                "letter or digit"
            )
        return value

    @field_validator("classes")
    @classmethod
    def _class_names(cls, value: dict[str, ClassSpec]) -> dict[str, ClassSpec]:
        if not value:
            raise ValueError("needs at least one class")
        problems = [p for p in map(_class_name_problem, value) if p]
        folded = [name.casefold() for name in value]
        duplicates = sorted({n for n in value if folded.count(n.casefold()) > 1})
        if duplicates:
            problems.append(f"class names must differ other than by case: {duplicates}")
        if problems:
            raise ValueError(PROBLEM_JOINER.join(problems))
        return value

    @field_validator("splits")
    @classmethod
    def _split_names(cls, value: dict[str, int]) -> dict[str, int]:
        if not value:
            raise ValueError("needs at least one split")
        bad = [name for name in value if not _SPLIT_NAME.match(name)]
        if bad:
            raise ValueError(f"split names must be letters, digits and '_' only: {bad}")
        return value

    @model_validator(mode="after")
    def _prompts_and_filters_resolve(self) -> Recipe:
        problems = _prompt_problems(self) + _filter_problems(self)
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
        spec = self.classes[class_name]
        variables = {**self.variables, **spec.variables}
        templates = self.templates if spec.templates is None else spec.templates
        expanded = [p for t in templates for p in expand_template(t, variables)]
        return list(dict.fromkeys([*spec.prompts, *expanded]))

    def negative_prompt_of(self, class_name: str) -> str:
        override = self.classes[class_name].negative_prompt
        return self.negative_prompt if override is None else override

    def guidance_scale_of(self, class_name: str) -> float:
        override = self.classes[class_name].guidance_scale
        return self.generation.guidance_scale if override is None else override


def _class_name_problem(name: str) -> str | None:
    if not name.strip() or name != name.strip():
        return f"class name {name!r} is empty or has leading/trailing spaces"
    if _FORBIDDEN_IN_CLASS.search(name) or name in (".", "..") or name.startswith("."):
        return f"class name {name!r} may not contain '/', '\\' or control characters, nor start with '.'"
    return None


def _template_fields(template: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}


def expand_template(template: str, variables: dict[str, list[str]]) -> list[str]:
    """Every combination of the template's variables, in the order the variables appear in the template."""
    fields = list(dict.fromkeys(f for _, f, _, _ in string.Formatter().parse(template) if f is not None))
    return [template.format(**dict(zip(fields, combo))) for combo in itertools.product(*(variables[f] for f in fields))]


def _prompt_problems(recipe: Recipe) -> list[str]:
    problems = []
    for i, template in enumerate(recipe.templates):
        problems += _template_problems(template, f"templates[{i}]")
    if problems:
        return problems
    for name in recipe.classes:
        problems += _class_prompt_problems(recipe, name)
    return problems


def _class_prompt_problems(recipe: Recipe, name: str) -> list[str]:
    """One class's template and prompt problems; its prompts are expanded only once its templates resolve."""
    spec = recipe.classes[name]
    problems = [
        p for i, t in enumerate(spec.templates or []) for p in _template_problems(t, f"classes.{name}.templates[{i}]")
    ]
    if problems:
        return problems
    variables = {**recipe.variables, **spec.variables}
    where = "templates" if spec.templates is None else f"classes.{name}.templates"
    for i, template in enumerate(recipe.templates if spec.templates is None else spec.templates):
        problems += [
            f"{where}[{i}]: variable {{{field}}} is not defined for class {name!r} (define it in 'variables' or "
            f"'classes.{name}.variables')"
            for field in sorted(_template_fields(template) - variables.keys())
        ]
    if problems:
        return problems
    prompts = recipe.prompts_of(name)
    if not prompts:
        return [f"classes.{name}: has no prompts (give 'prompts', or 'templates' with their 'variables')"]
    if recipe.prompt_disjoint and len(prompts) < len(recipe.splits):
        return [
            f"classes.{name}: prompt_disjoint needs at least one distinct prompt per split "
            f"({len(recipe.splits)} splits) but the class has {len(prompts)}"
        ]
    return []


def _filter_problems(recipe: Recipe) -> list[str]:
    """Filters read score columns: each needs its scorer, and their outputs must not collide with splits."""
    filters = recipe.filters
    problems = [
        f"filters.{rule.key}: reads the {scorer} scores, but scoring.{scorer}.enabled is false"
        for scorer, rule, _ in filters.rules()
        if not getattr(recipe.scoring, scorer).enabled
    ]
    if filters.require_imagenet_match and not any(spec.imagenet_classes for spec in recipe.classes.values()):
        problems.append("filters.require_imagenet_match: no class has imagenet_classes, so it would keep every row")
    if filters.active and filters.dropped == "split":
        problems += [
            f"splits.{name}: with filters.dropped 'split', the dropped rows of split "
            f"{name.removesuffix(DROPPED_SUFFIX)!r} "
            f"go to {name!r}"
            for name in recipe.splits
            if name.endswith(DROPPED_SUFFIX) and name.removesuffix(DROPPED_SUFFIX) in recipe.splits
        ]
    return problems


def _template_problems(template: str, where: str) -> list[str]:
    try:
        fields = _template_fields(template)
    except ValueError as err:
        return [f"{where}: malformed template {template!r}: {err}"]
    return [f"{where}: empty or positional field '{{}}' in {template!r}; name every field"] if "" in fields else []


def parse_recipe(text: str, source: str = "<recipe>") -> Recipe:
    """Parse YAML text into a validated recipe, or raise one RecipeError listing every problem."""
    return validate(Recipe, load_yaml(text, source, RecipeError), source, RecipeError, "recipe")


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file."""
    return parse_recipe(read_text(Path(path), RecipeError), str(path))


def recipe_to_yaml(recipe: Recipe) -> str:
    """The recipe as YAML with every default made explicit, so a stored copy rebuilds the same dataset."""
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
