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
import functools
import math
import re
import unicodedata
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from builders import recipe_checks
from builders.formats.choice import DEFAULT_FORMATS, FormatNames, Formats
from builders.limits import (
    MAX_BATCH_SIZE,
    MAX_CLASSES,
    MAX_DESCRIPTION_CHARS,
    MAX_GUIDANCE_SCALE,
    MAX_GUIDANCE_VALUES,
    MAX_IMAGE_SIDE,
    MAX_IMAGES,
    MAX_IMAGES_PER_PROMPT,
    MAX_NAME_CHARS,
    MAX_PARTITION_WEIGHT,
    MAX_PROMPTS_PER_CLASS,
    MAX_REGENERATIONS,
    MAX_SEED,
    MAX_SHARD_SIZE,
    MAX_STEPS,
    MAX_TEXT_CHARS,
    MAX_UPLOAD_INTERVAL,
)
from builders.prompts import ClassPrompts, partition, split_shares, template_fields
from builders.schedulers import SCHEDULER_NAMES, is_known_scheduler
from eval.filters import FilterSettings
from eval.quality import QualitySettings
from eval.scorers import ScoringSettings
from eval.scorers.base import ScoringTask
from eval.scorers.resnet50 import imagenet_categories
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
    if value > MAX_GUIDANCE_SCALE:
        raise ValueError(
            f"{where}Input should be less than or equal to {MAX_GUIDANCE_SCALE:g} (got {value}): a larger guidance "
            "overflows the model's arithmetic and gives black images"
        )
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
    upload_interval: float = Field(default=60.0, gt=0, le=MAX_UPLOAD_INTERVAL)  # seconds between two such uploads
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
    prompt_partition: dict[str, Annotated[float, Field(gt=0, le=MAX_PARTITION_WEIGHT)]] | None = None
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
        problems = recipe_checks.problems(_parts(dict(self), {name: dict(spec) for name, spec in self.classes.items()}))
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
        return _class_prompts(dict(self), class_name, dict(self.classes[class_name])).prompts()

    def prompt_shares(self) -> dict[str, float]:
        """Each split's share of every class's prompts under ``prompt_disjoint`` (default: equal shares)."""
        return split_shares(self.splits, self.prompt_partition)

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


# -- what the checks across keys read -------------------------------------------------------------------------------
def _parts(top: dict[str, Any], classes: dict[str, dict[str, Any] | None] | None) -> recipe_checks.Parts:
    """What the checks across keys read, from the recipe's keys and each class's: those of a validated recipe, or
    those that validated on their own (``_valid_keys``; a key missing here did not validate)."""
    expansion = top.get("prompt_expansion")
    return recipe_checks.Parts(
        templates=_keyed(top.get("templates"), ("templates",)),
        classes=None if classes is None else [_class_prompts(top, name, spec) for name, spec in classes.items()],
        splits=top.get("splits"),
        prompt_disjoint=top.get("prompt_disjoint"),
        prompt_partition=top.get("prompt_partition"),
        partition_usable="prompt_partition" in top,
        filters=top.get("filters"),
        scoring=top.get("scoring"),
        quality=top.get("quality"),
        lonely_samples=[
            name
            for name, spec in (classes or {}).items()
            if spec and spec.get("template_samples") is not None and not _templates_of(top, spec)
        ],
        expansion_lock=expansion.prompts if expansion else None,
        per_class=expansion.per_class if expansion else 0,
    )


def _class_prompts(top: dict[str, Any], name: str, spec: dict[str, Any] | None) -> ClassPrompts:
    """One class's prompt spec, its keys merged with the recipe's (``None`` for a part that did not validate)."""
    if spec is None:
        return ClassPrompts(name, None, None, False, None, None)
    own = spec.get("templates", _INVALID) is not None
    variables, own_variables = top.get("variables"), spec.get("variables")
    expansion = top.get("prompt_expansion")
    return ClassPrompts(
        name,
        spec.get("prompts"),
        _keyed(_templates_of(top, spec), ("classes", name, "templates") if own else ("templates",)),
        own,
        None if variables is None or own_variables is None else {**variables, **own_variables},
        bool(spec["imagenet_classes"]) if "imagenet_classes" in spec else None,
        top.get("template_samples") if spec.get("template_samples") is None else spec["template_samples"],
        top.get("seed") or 0,
        tuple((expansion.prompts or {}).get(name, [])) if expansion else (),
        expansion.per_class if expansion else 0,
    )


def _templates_of(top: dict[str, Any], spec: dict[str, Any]) -> list[str] | None:
    """The templates a class uses: its own, or the recipe's when it has none (``None``: they did not validate)."""
    own = spec.get("templates", _INVALID)
    return top.get("templates") if own is None else None if own is _INVALID else own


def _keyed(templates: list[str] | None, where: tuple) -> list[tuple[str, str]] | None:
    return None if templates is None else [(key_path((*where, i)), t) for i, t in enumerate(templates)]


_INVALID = object()  # a key given but not valid, told apart from a valid None


def _valid_keys(model: type[BaseModel], data: dict) -> dict[str, Any]:
    """Each of ``model``'s keys validated on its own (its default where ``data`` leaves it out); a key that does
    not validate is left out. The checks across keys then run on whatever validated, with no second reader."""
    valid = {}
    for name, field in model.model_fields.items():
        if name not in data:
            if not field.is_required():
                valid[name] = field.get_default(call_default_factory=True)
            continue
        try:
            valid[name] = _key_adapter(model, name).validate_python(data[name])
        except ValidationError:
            pass
    return valid


@functools.cache
def _key_adapter(model: type[BaseModel], name: str) -> TypeAdapter:
    field = model.model_fields[name]
    annotation = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
    if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
        return TypeAdapter(annotation)  # a section: validated by its own model, under its own config
    return TypeAdapter(annotation, config=model.model_config)


def _parts_of_data(data: dict) -> recipe_checks.Parts:
    """The parts of a recipe that failed validation, from each key (and each class's key) that validates alone."""
    top = _valid_keys(Recipe, {key: value for key, value in data.items() if key != "classes"})
    classes = data.get("classes")
    return _parts(
        top,
        {str(name): _valid_keys(ClassSpec, spec) if isinstance(spec, dict) else None for name, spec in classes.items()}
        if isinstance(classes, dict)
        else None,
    )


def parse_recipe(text: str, source: str = "<recipe>") -> Recipe:
    """Parse YAML text into a validated recipe, or raise one RecipeError listing every problem: those of single
    keys and those across keys together, even when the first kind stops pydantic before the second."""
    data = load_yaml(text, source, RecipeError)
    try:
        return validate(Recipe, data, source, RecipeError, "recipe")
    except RecipeError as err:
        more = recipe_checks.problems(_parts_of_data(data)) if isinstance(data, dict) else []
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
