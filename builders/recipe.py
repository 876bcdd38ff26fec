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
    MAX_PROMPTS,
    MAX_PROMPTS_PER_CLASS,
    MAX_REFERENCES,
    MAX_REGENERATIONS,
    MAX_SEED,
    MAX_SHARD_SIZE,
    MAX_STEPS,
    MAX_TEXT_CHARS,
    MAX_UPLOAD_INTERVAL,
)
from builders.prompts import ClassPrompts, partition, split_shares, template_fields
from builders.references import IMAGE_SUFFIXES, read_references
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
Strength = Annotated[float, Field(gt=0, le=1)]
DEFAULT_STRENGTH = 0.75
ReferencePath = Annotated[str, Field(min_length=1, max_length=4096)]
ReferenceImages = ReferencePath | Annotated[list[ReferencePath], Field(min_length=1, max_length=MAX_REFERENCES)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


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


# What each key decides, declared on its field (``json_schema_extra``) and read by the content fingerprint
# (``builders.content``): the content of every shard (in the fingerprint: a change refuses to mix old shards in),
# some images' content (in those images' shard keys: a change remakes only their shards), or no pixel at all (how
# the build runs, what is kept, where it goes). A section marked ``fields`` has each of its keys marked instead.
CONTENT = {"content": True}
PER_IMAGE = {"content": "key"}
NOT_CONTENT = {"content": False}
BY_FIELD = {"content": "fields"}


class LoraSettings(_Strict):
    """A LoRA adapter fused into the generator's weights before anything runs."""

    id: NonEmptyStr = Field(description="Hub id, local directory or weights file of the adapter")
    weight_name: Annotated[str, Field(min_length=1, max_length=256)] | None = Field(
        default=None, description="the weights file within a Hub repo or directory holding several"
    )
    scale: float = Field(default=1.0, ge=-100, le=100, description="how strongly the adapter is fused, -100 to 100")

    @field_validator("id")
    @classmethod
    def _existing_local_path(cls, value: str) -> str:
        if value == TINY_RANDOM:
            raise ValueError(f"there is no {TINY_RANDOM} LoRA; expected a Hub id, a local directory or a weights file")
        return check_model_ref(value)


class ModelSettings(_Strict):
    """The generator and how it runs. Keys a recipe leaves out may take its family's defaults
    (``builders.generators.resolve_family``)."""

    id: NonEmptyStr = Field(
        default=DEFAULT_GENERATOR,
        description="Hub id or local directory of a diffusers text-to-image pipeline, classic or modular (SD 1.x/2.x, "
        "SDXL, SD3, FLUX.1, PixArt-Σ, Sana, Z-Image, FLUX.2 [klein], Krea 2, FLUX.3 image klein, Qwen-Image 2.1, or "
        "any other whose call takes a prompt, steps, size and generators: see the model families); `tiny-random` "
        "builds a tiny random SD one locally",
        json_schema_extra=CONTENT,
    )
    revision: Revision | None = Field(
        default=None,
        description="Hub revision (branch, tag or commit; no spaces or brackets)",
        json_schema_extra=CONTENT,
    )
    pipeline: Annotated[str, Field(min_length=1, max_length=100)] | None = Field(
        default=None,
        description="the diffusers pipeline class, filled in from the model's `model_index.json` and recorded in "
        "`recipe.yaml`; set it only to pin what a rebuild must find",
        json_schema_extra=CONTENT,
    )
    loras: list[LoraSettings] = Field(
        default=[],
        max_length=16,
        description="LoRA adapters (at most 16), fused before compiling",
        json_schema_extra=CONTENT,
    )
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        default="auto",
        description="`auto` (on GPU the family's: bfloat16 for FLUX.1, SD3 and Sana, float16 for the others; float32 "
        "on CPU), `float32`, `float16` or `bfloat16`",
        json_schema_extra={**CONTENT, "resolved": True},  # the fingerprint records the dtype it resolves to
    )
    scheduler: str = Field(
        default="default",
        description="`default` (the model's own), `dpm++`, `dpm++_karras`, `unipc`, `euler`, `euler_a`, `ddim`, "
        "`pndm`, "
        "`lms`, `heun`, or any diffusers scheduler class name",
        json_schema_extra=CONTENT,
    )
    safety_checker: bool = Field(
        default=True,
        description="run the pipeline's safety checker, or for a family that ships none the standalone one "
        "(`model.safety_checker_id`)",
        json_schema_extra=CONTENT,
    )
    safety_checker_id: NonEmptyStr = Field(
        default=DEFAULT_SAFETY_CHECKER,
        description="the standalone safety checker, for pipelines that ship none of their own",
        json_schema_extra={**CONTENT, "only_with": "safety_checker"},
    )
    on_flagged: Literal["regenerate", "drop"] = Field(
        default="regenerate",
        description="a flagged (blacked-out) image is `regenerate`d with a new derived seed, or `drop`ped",
        json_schema_extra={**CONTENT, "only_with": "safety_checker"},
    )
    max_regenerations: int = Field(
        default=3,
        ge=0,
        le=MAX_REGENERATIONS,
        description="attempts before a flagged image is dropped (counted in the build report), at most "
        f"{MAX_REGENERATIONS}",
        json_schema_extra={**CONTENT, "only_with": "safety_checker"},
    )
    channels_last: bool = Field(
        default=False, description="channels-last memory format for the denoiser and the VAE", json_schema_extra=CONTENT
    )
    compile: bool = Field(
        default=False, description="`torch.compile` the denoiser and the VAE decoder", json_schema_extra=CONTENT
    )
    attention: Literal["sdpa", "default"] = Field(
        default="sdpa",
        description="`sdpa` (PyTorch scaled-dot-product kernels) or `default` (whatever diffusers picks)",
        json_schema_extra=CONTENT,
    )
    max_sequence_length: int | None = Field(
        default=None,
        ge=1,
        le=8192,
        description="prompt tokens of a T5/Gemma text encoder, where the family has one (`null`: the family's)",
        json_schema_extra=CONTENT,
    )
    text_encoder_dtype: Literal["float32", "float16", "bfloat16"] | None = Field(
        default=None,
        description="the text encoders' dtype (`null`: `model.dtype`)",
        # recorded only when set: fingerprints of builds made before the key existed stay the same
        json_schema_extra={**CONTENT, "omit_default": True},
    )
    cpu_offload: bool = Field(
        default=False,
        description="keep each model on the CPU until it runs (less GPU memory, slower; the same pixels)",
        json_schema_extra=NOT_CONTENT,
    )
    vae_slicing: bool = Field(
        default=False,
        description="decode a batch one image at a time (less memory)",
        json_schema_extra={**CONTENT, "fingerprint": "model.vae", "grouped": True},
    )
    vae_tiling: bool = Field(
        default=False,
        description="decode each image in tiles (less memory for large images)",
        json_schema_extra={**CONTENT, "fingerprint": "model.vae", "grouped": True},
    )

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


def _image_side(side: str) -> Any:
    return Field(
        default=512,
        ge=8,
        le=MAX_IMAGE_SIDE,
        description=f"image {side}, a multiple of the family's factor (8 for SD), 8 to {MAX_IMAGE_SIDE} (the "
        "family's native size when left out)",
        json_schema_extra=CONTENT,
    )


class GenerationSettings(_Strict):
    """Parameters of every pipeline call. Defaults are the reference exercise's."""

    guidance_scale: GuidanceSetting = Field(
        default=7.5,
        description=f"classifier-free guidance, or FLUX.1 [dev]'s distilled guidance (0 to {MAX_GUIDANCE_SCALE:g}: far "
        "beyond any useful value, a larger one overflows to black images; the family's when left out). A list of 1 "
        f"to {MAX_GUIDANCE_VALUES} values is a guidance sweep, cycled per image",
        json_schema_extra=PER_IMAGE,
    )
    num_inference_steps: int = Field(
        default=50,
        ge=1,
        le=MAX_STEPS,
        description=f"denoising steps, 1 to {MAX_STEPS:,} (the family's when left out)",
        json_schema_extra=CONTENT,
    )
    height: int = _image_side("height")
    width: int = _image_side("width")
    batch_size: int = Field(
        default=8,
        ge=1,
        le=MAX_BATCH_SIZE,
        description=f"images per pipeline call (per process), 1 to {MAX_BATCH_SIZE:,}; part of the plan, so results "
        "never depend on the number of processes",
        json_schema_extra=PER_IMAGE,
    )
    images_per_prompt: int = Field(
        default=2,
        ge=1,
        le=MAX_IMAGES_PER_PROMPT,
        description="consecutive images made from each prompt before moving to the next, 1 to "
        f"{MAX_IMAGES_PER_PROMPT:,}",
        json_schema_extra=PER_IMAGE,
    )
    strength: Strength = Field(
        default=DEFAULT_STRENGTH,
        description="with `reference_images` (real-image guidance): how far each image departs from its reference, "
        "above 0 and at most 1: the share of the denoising steps run from the noised reference (diffusers' "
        f"image-to-image `strength`). {DEFAULT_STRENGTH} keeps the reference's layout and colours and redraws "
        "the rest; below about 0.4 images are near-copies of their references (see docs/guidance.md)",
        json_schema_extra=PER_IMAGE,
    )

    @field_validator("height", "width")
    @classmethod
    def _multiple_of_8(cls, value: int) -> int:
        if value % 8:
            raise ValueError(f"must be a multiple of 8 (the VAE downsamples by 8), got {value}")
        return value


class ClassSpec(_Strict):
    """One class: literal prompts and/or templates expanded over variables, plus optional overrides."""

    prompts: list[Text] = Field(
        default=[],
        description=f"literal prompts (at most {MAX_TEXT_CHARS:,} characters each)",
        json_schema_extra=PER_IMAGE,
    )
    templates: list[Text] | None = Field(
        default=None,
        description="this class's templates (`null`: the recipe's `templates`; `[]` for none)",
        json_schema_extra=PER_IMAGE,
    )
    variables: Variables = Field(
        default={}, description="this class's variables, merged over the recipe's", json_schema_extra=PER_IMAGE
    )
    negative_prompt: OptionalText | None = Field(
        default=None,
        description="this class's negative prompt (`null`: the recipe's `negative_prompt`; at most "
        f"{MAX_TEXT_CHARS:,} characters)",
        json_schema_extra=PER_IMAGE,
    )
    guidance_scale: GuidanceSetting | None = Field(
        default=None,
        description="this class's guidance: one value or a sweep (a list) (`null`: `generation.guidance_scale`)",
        json_schema_extra=PER_IMAGE,
    )
    template_samples: TemplateSamples | None = Field(
        default=None,
        description="this class's number of sampled template combinations (`null`: the recipe's `template_samples`)",
        json_schema_extra=PER_IMAGE,
    )
    label_text: Text | None = Field(
        default=None,
        description=f"the text CLIP scores the class as (`null`: the class name; at most {MAX_TEXT_CHARS:,} "
        "characters)",
        json_schema_extra={**CONTENT, "fingerprint": "label_texts", "per_class": "list"},
    )
    imagenet_classes: list[ImageNetClass] = Field(
        default=[],
        description="ImageNet class names that count as this class for ResNet50 agreement, spelled as in "
        "torchvision's categories (`red fox`, `Arctic fox`); checked when the recipe loads",
        json_schema_extra={**CONTENT, "fingerprint": "imagenet_classes", "per_class": "dict"},
    )
    reference_images: ReferenceImages | None = Field(
        default=None,
        description=f"real-image guidance: a folder of real photos of the class ({', '.join(IMAGE_SUFFIXES)}; other "
        f"files are ignored), or a list of image files, relative to the recipe's folder; at most {MAX_REFERENCES:,}. "
        "Each image starts from one of them (image-to-image), chosen from the image's identity; each is turned "
        "upright (EXIF), resized to cover the generation size and center-cropped. Checked and hashed when the "
        "recipe loads; `recipe.yaml` records the folder's absolute path",
        json_schema_extra=PER_IMAGE,
    )
    strength: Strength | None = Field(
        default=None,
        description="this class's image-to-image strength (`null`: `generation.strength`)",
        json_schema_extra=PER_IMAGE,
    )
    reference_sha256: dict[str, Sha256] | None = Field(
        default=None,
        description="recorded by the build: the SHA-256 of each reference file by name; a rebuild from `recipe.yaml` "
        "needs exactly these files. Leave it out",
        json_schema_extra=PER_IMAGE,
    )

    @model_validator(mode="after")
    def _guidance_needs_references(self) -> ClassSpec:
        given = [key for key in ("strength", "reference_sha256") if getattr(self, key) is not None]
        if given and self.reference_images is None:
            raise ValueError(f"{' and '.join(given)} without reference_images: set reference_images or remove it")
        return self


DEFAULT_EXPANSION_INSTRUCTION = (
    "Write one short, vivid description of a photo of a {label}, varying the setting, light and viewpoint:"
)


class PromptExpansionSettings(_Strict):
    """A local language model writes ``per_class`` more prompts for every class, once (``builders.expansion``);
    the build keeps them in ``<output>/prompts.lock.yaml`` and records them here, in ``prompts``, so the plan is a
    function of the recipe and its lock and every rebuild is identical."""

    model: ModelRef = Field(
        description="Hub id or local directory of a causal language model (`tiny-random` for tests)"
    )
    revision: Revision | None = Field(default=None, description="its Hub revision")
    per_class: int = Field(
        ge=1, le=MAX_PROMPTS_PER_CLASS, description=f"prompts it writes for each class, 1 to {MAX_PROMPTS_PER_CLASS:,}"
    )
    instruction: Text = Field(
        default=DEFAULT_EXPANSION_INSTRUCTION,
        description="what the model is asked, once per prompt; its only field is `{label}` (the class's label text)",
    )
    max_new_tokens: int = Field(default=40, ge=1, le=1024, description="tokens per written prompt, 1 to 1024")
    temperature: float = Field(default=1.0, gt=0, le=10, description="sampling temperature, above 0 and at most 10")
    attempts: int = Field(
        default=4,
        ge=1,
        le=100,
        description="generation rounds per class to find `per_class` distinct prompts, 1 to 100",
    )
    prompts: dict[str, list[Text]] | None = Field(
        default=None,
        description="the lock: the written prompts per class, recorded by the build (from "
        "`<output>/prompts.lock.yaml`) "
        "and read back on rebuilds; leave it out",
    )

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

    image_format: Literal["png", "webp", "jpeg"] = Field(
        default="png", description="`png`, `webp` or `jpeg`", json_schema_extra=CONTENT
    )
    png_compress_level: int = Field(
        default=6, ge=0, le=9, description="PNG zlib level, 0 to 9", json_schema_extra=CONTENT
    )
    quality: int = Field(default=95, ge=1, le=100, description="WebP/JPEG quality, 1 to 100", json_schema_extra=CONTENT)
    shard_size: int = Field(
        default=256,
        ge=1,
        le=MAX_SHARD_SIZE,
        description=f"images per shard, at most {MAX_SHARD_SIZE:,} (rounded down to whole batches, at least one "
        "batch): "
        "the unit of distribution, resume and upload. A split with fewer than 64 full shards gets shards of half as "
        "many batches, halved again down to one batch, so every process gets work; `--dry-run` prints the size used",
        json_schema_extra=PER_IMAGE,
    )


class HubSettings(_Strict):
    """Where the finished dataset is pushed on the Hugging Face Hub."""

    repo_id: str | None = Field(default=None, description="push the dataset to this Hub repo after the build")
    private: bool = Field(default=False, description="create the Hub repo private")
    push_during_build: bool = Field(
        default=False,
        description="upload finished shards to the repo's `building/` folder while the build runs, so the final push "
        "finds their bytes there; needs a repo (`hub.repo_id` or `--push-to-hub`)",
    )
    upload_interval: float = Field(
        default=60.0,
        gt=0,
        le=MAX_UPLOAD_INTERVAL,
        description="with `hub.push_during_build`, seconds between two uploads of the shards finished meanwhile "
        f"(one commit each; at most {MAX_UPLOAD_INTERVAL:g})",
    )
    formats: FormatNames = Field(
        default=(),
        description="formats uploaded beside Parquet, each into its own folder (of those in `formats`)",
    )


class Recipe(_Strict):
    """A whole build: what to generate, how, how to score it, and where it goes."""

    name: str = Field(
        description=f"dataset name: at most {MAX_NAME_CHARS} letters, digits, `.`, `_`, `-`, starting with a letter or "
        "digit (it names the output directory)",
        json_schema_extra=NOT_CONTENT,
    )
    description: Annotated[str, Field(max_length=MAX_DESCRIPTION_CHARS)] = Field(
        default="",
        description=f"free text (at most {MAX_DESCRIPTION_CHARS:,} characters), goes into the dataset card as text "
        "(Markdown and HTML escaped)",
        json_schema_extra=NOT_CONTENT,
    )
    seed: int = Field(
        default=0,
        ge=0,
        le=MAX_SEED,
        description="global seed, 0 to 2^63 − 1; every image's seed derives from it and the image's identity",
        json_schema_extra=CONTENT,
    )
    model: ModelSettings = Field(
        default=ModelSettings(), description="the generator and how it runs", json_schema_extra=BY_FIELD
    )
    generation: GenerationSettings = Field(
        default=GenerationSettings(), description="the parameters of every pipeline call", json_schema_extra=BY_FIELD
    )
    negative_prompt: OptionalText = Field(
        default="",
        description=f"negative prompt for every class (at most {MAX_TEXT_CHARS:,} characters)",
        json_schema_extra=PER_IMAGE,
    )
    templates: list[Text] = Field(
        default=[],
        description='prompt templates for every class, e.g. `"a {style} of a {subject}"`: plain `{name}` fields only '
        "(no format spec, conversion, index or attribute; `{{` and `}}` are literal braces). Expansion is "
        "counted before "
        f"it happens: a class's templates may give at most {MAX_PROMPTS_PER_CLASS:,} prompts (the product of their "
        f"variables' lengths), all classes together {MAX_PROMPTS:,}, and every prompt at most "
        f"{MAX_TEXT_CHARS:,} characters",
        json_schema_extra=PER_IMAGE,
    )
    variables: Variables = Field(
        default={},
        description="values of template variables, e.g. `style: [watercolor, sketch]` (names are identifiers); a "
        "template expands into all combinations",
        json_schema_extra=PER_IMAGE,
    )
    template_samples: TemplateSamples | None = Field(
        default=None,
        description=f"draw this many combinations (1 to {MAX_PROMPTS_PER_CLASS:,}) of each class's templates × "
        "variables "
        "instead of expanding them all (`null`), with the recipe's seed; the product may be any size: nothing "
        "is expanded",
        json_schema_extra=PER_IMAGE,
    )
    classes: dict[str, ClassSpec] = Field(
        description=f"the classes by name, at most {MAX_CLASSES:,}. A class name has at most {MAX_NAME_CHARS} "
        "characters, "
        "no leading or trailing spaces, no control or invisible characters, no `/` or `\\`, no leading `.`; two names "
        "equal once Unicode NFKC-normalized and case-folded (`café` composed or not, fullwidth `ｆｏｘ`, `Fox`) "
        "are refused",
        json_schema_extra={**BY_FIELD, "fingerprint": "class_names"},
    )
    splits: dict[str, Annotated[int, Field(gt=0, le=MAX_IMAGES)]] = Field(
        description=f"images per class in each split, 1 to {MAX_IMAGES:,} (`train`, `test`, any other name of at most "
        f"{MAX_NAME_CHARS} letters, digits and `_`; names differ other than by case); classes × the sum of the counts "
        f"is at most {MAX_IMAGES:,}",
        json_schema_extra=PER_IMAGE,
    )
    prompt_disjoint: bool = Field(
        default=False,
        description="give each split its own prompts, so the test split measures generalisation rather than prompt "
        "memory. Each prompt of a class goes to one split chosen from the prompt alone (weighted rendezvous hashing "
        "of seed, class, prompt and split against `prompt_partition`): changing the counts or adding prompts moves no "
        "prompt. Every split gets at least one prompt of each class; a class with fewer prompts than splits is an "
        "error. `build.py --dry-run` shows the prompts per split and class",
        json_schema_extra=PER_IMAGE,
    )
    prompt_partition: dict[str, Annotated[float, Field(gt=0, le=MAX_PARTITION_WEIGHT)]] | None = Field(
        default=None,
        description="with `prompt_disjoint`, each split's share of every class's prompts, e.g. `{train: 0.8, "
        f"test: 0.2}}` (positive weights up to {MAX_PARTITION_WEIGHT:,.0f}, normalized; one per split, no others; "
        "`null`: equal shares)",
        json_schema_extra=PER_IMAGE,
    )
    prompt_expansion: PromptExpansionSettings | None = Field(
        default=None,
        description="a local language model writes more prompts per class, once; kept in `<output>/prompts.lock.yaml` "
        "and recorded in `recipe.yaml` (`prompt_expansion.prompts`)",
        json_schema_extra=PER_IMAGE,
    )
    scoring: ScoringSettings = Field(
        default=ScoringSettings(),
        description="the scorers and their models (one key per scorer)",
        json_schema_extra=CONTENT,
    )
    filters: FilterSettings = Field(
        default=FilterSettings(),
        description="thresholds a row must pass to stay in its split; the others are kept aside, never deleted",
        json_schema_extra=NOT_CONTENT,
    )
    quality: QualitySettings = Field(
        default=QualitySettings(),
        description="duplicates, leakage, diversity and the distance to a reference dataset",
        json_schema_extra=NOT_CONTENT,
    )
    output: OutputSettings = Field(
        default=OutputSettings(), description="how images are encoded and shards cut", json_schema_extra=BY_FIELD
    )
    formats: Formats = Field(
        default=DEFAULT_FORMATS,
        description="the formats written beside `data/` (Parquet always is): names, each optionally with its options, "
        "e.g. `[parquet, imagefolder, {webdataset: {max_samples: 1000}}]`",
        json_schema_extra=NOT_CONTENT,
    )
    hub: HubSettings = Field(
        default=HubSettings(), description="where the dataset is pushed", json_schema_extra=NOT_CONTENT
    )

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

    @property
    def guided(self) -> bool:
        """Whether any class starts its images from real reference images (``docs/guidance.md``)."""
        return any(spec.reference_images is not None for spec in self.classes.values())

    def strength_of(self, class_name: str) -> float:
        override = self.classes[class_name].strength
        return self.generation.strength if override is None else override

    def references_of(self, class_name: str) -> list[tuple[str, str]]:
        """The class's reference files as (name, SHA-256), by name: what each image picks one of (empty: none)."""
        return sorted((self.classes[class_name].reference_sha256 or {}).items())

    def reference_path(self, class_name: str, name: str) -> Path:
        """Where the class's reference file ``name`` is (the recipe holds absolute paths once loaded)."""
        value = self.classes[class_name].reference_images
        if isinstance(value, str):
            return Path(value) / name
        return next(Path(path) for path in value or [] if Path(path).name == name)

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
            valid[name] = key_adapter(model, name).validate_python(data[name])
        except ValidationError:
            pass
    return valid


@functools.cache
def key_adapter(model: type[BaseModel], name: str) -> TypeAdapter:
    """A validator (and serializer) of one of the model's keys alone, as the model checks and dumps it."""
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


def parse_recipe(text: str, source: str = "<recipe>", base_dir: Path | None = None) -> Recipe:
    """Parse YAML text into a validated recipe, or raise one RecipeError listing every problem: those of single
    keys and those across keys together, even when the first kind stops pydantic before the second. Reference
    images are found relative to ``base_dir`` (the recipe's folder; the working directory when ``None``)."""
    data = load_yaml(text, source, RecipeError)
    try:
        return _with_references(validate(Recipe, data, source, RecipeError, "recipe"), base_dir or Path(), source)
    except RecipeError as err:
        more = recipe_checks.problems(_parts_of_data(data)) if isinstance(data, dict) else []
        more = [p for p in more if p not in err.problems]
        if not more:
            raise
        raise RecipeError(source, [*err.problems, *more]) from None


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file."""
    return parse_recipe(read_text(Path(path), RecipeError), str(path), Path(path).parent)


def _with_references(recipe: Recipe, base_dir: Path, source: str) -> Recipe:
    """The recipe with each class's reference images checked, hashed and pinned: ``reference_images`` made
    absolute and ``reference_sha256`` filled (or, when the recipe recorded it, checked against the files), so the
    plan and every process read the same set. Any problem is a recipe error naming the key, before any model
    loads."""
    if not recipe.guided:
        return recipe
    classes, problems = dict(recipe.classes), []
    for name, spec in recipe.classes.items():
        if spec.reference_images is None:
            continue
        found = read_references(
            key_path(("classes", name, "reference_images")), spec.reference_images, base_dir, spec.reference_sha256
        )
        problems += found.problems
        classes[name] = spec.model_copy(update={"reference_images": found.location, "reference_sha256": found.hashes})
    if problems:
        raise RecipeError(source, problems)
    return recipe.model_copy(update={"classes": classes})


def recipe_to_yaml(recipe: Recipe) -> str:
    """The recipe as YAML with every default made explicit, so a stored copy rebuilds the same dataset."""
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
