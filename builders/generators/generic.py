"""Any diffusers text-to-image pipeline, run from what its class says of itself: the parameters of its ``__call__``.

A pipeline whose call takes a prompt, a number of steps, a height and width and per-image ``generator``s can make a
dataset: which recipe keys apply to it is read from that signature (found from ``model_index.json``'s
``_class_name`` with ``getattr(diffusers, name)``: no weights load), so a key it does not take is a recipe error
naming the key and the pipeline before anything downloads. A negative prompt needs ``negative_prompt``; a guidance
value goes to ``true_cfg_scale`` where the pipeline has one (its classifier-free guidance; Qwen-Image's
``guidance_scale`` is a distilled embedding), else to ``guidance_scale``, and a pipeline with neither takes none;
``model.max_sequence_length`` needs ``max_sequence_length``. Image-to-image, inpainting, editing, control and video
pipelines (by their call's ``strength``, ``mask_image``, ``control_image``, ``num_frames``, ``video_length``, or
their class name), and pipelines whose call requires another input than the prompt, are not text-to-image and stay
refused.

``SignatureGenerator`` is the plug-in base of the families added this way (Z-Image, FLUX.2 [klein], Krea 2,
Qwen-Image 2.1: a module each with their defaults, FLOPs and tiny pipeline); ``Generic`` runs any other such
pipeline class with the defaults of its own signature and no FLOPs count. Hand-written plug-ins (SD, SDXL, SD3,
FLUX.1, PixArt-Σ, Sana) stay where a family needs more than its signature says.
"""

from __future__ import annotations

import inspect
from functools import cache
from typing import Any, ClassVar

from builders.generators.base import DiffusersGenerator, FamilyDefaults
from builders.generators.sources import ModelFiles
from builders.recipe import Recipe

TEXT_TO_IMAGE = ("prompt", "num_inference_steps", "height", "width", "generator")
# What the call of another task's pipeline takes, and the words its class name carries (diffusers' naming): such a
# pipeline may take every text-to-image parameter too, with its other input optional (a control image, a video).
NOT_TEXT_TO_IMAGE = ("strength", "mask_image", "control_image", "num_frames", "video_length", "image_embeds")
OTHER_TASKS = (
    "Img2Img",
    "Inpaint",
    "Edit",
    "ControlNet",
    "Adapter",
    "Video",
    "Animate",
    "I2I",
    "Pix2Pix",
    "Refiner",
    "SuperResolution",
    "Prior",
    "LDM3D",  # RGB and depth: its output has no ``images``
)
GUIDANCE_PARAMETERS = ("true_cfg_scale", "guidance_scale")  # the classifier-free one first
EMBEDDED_GUIDANCE = "a distilled guidance embedding (`guidance_scale` is its strength; one pass per step)"


@cache
def call_parameters(pipeline_class: str) -> dict[str, Any] | None:
    """The parameters of the diffusers pipeline class's ``__call__`` with their defaults; None when diffusers has no
    pipeline class of that name. Importing the class loads no weights."""
    import diffusers

    try:
        found = getattr(diffusers, pipeline_class)
    except (AttributeError, ImportError, RuntimeError):
        return None
    if not isinstance(found, type) or not issubclass(found, diffusers.DiffusionPipeline):
        return None
    parameters = inspect.signature(found.__call__).parameters
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return {name: p.default for name, p in parameters.items() if name != "self" and p.kind not in variadic}


def image_to_image_for(pipeline_class: str) -> str | None:
    """The image-to-image pipeline class diffusers pairs with a text-to-image one (``AutoPipelineForImage2Image``'s
    table) when it starts from an image and a ``strength``; None when there is none (real-image guidance is then
    refused, naming the class)."""
    from diffusers.pipelines.auto_pipeline import AUTO_IMAGE2IMAGE_PIPELINES_MAPPING, AUTO_TEXT2IMAGE_PIPELINES_MAPPING

    key = next((key for key, cls in AUTO_TEXT2IMAGE_PIPELINES_MAPPING.items() if cls.__name__ == pipeline_class), None)
    found = AUTO_IMAGE2IMAGE_PIPELINES_MAPPING.get(key) if key else None
    return found.__name__ if found is not None and "strength" in (call_parameters(found.__name__) or {}) else None


def is_text_to_image(pipeline_class: str) -> bool:
    """Whether the class's call makes images from a prompt alone, each from its own ``generator``: it takes every
    parameter of ``TEXT_TO_IMAGE``, none of another task's, and requires none but the prompt (BLIP-Diffusion's
    reference image, Attend-and-Excite's token indices)."""
    parameters = call_parameters(pipeline_class)
    return (
        parameters is not None
        and not any(word in pipeline_class for word in OTHER_TASKS)
        and all(name in parameters for name in TEXT_TO_IMAGE)
        and not any(name in parameters for name in NOT_TEXT_TO_IMAGE)
        and all(default is not inspect.Parameter.empty for name, default in parameters.items() if name != "prompt")
    )


def is_distilled(files: ModelFiles) -> bool:
    """Whether the pipeline's config (``model_index.json``) marks its model step-distilled (FLUX.2 [klein], Krea 2)."""
    return bool(files.index().get("is_distilled", False))


def sample_sigmas(files: ModelFiles) -> list[float] | None:
    """The sampling schedule the model's author fixed in its index (``sample_sigmas``: Qwen-Image 2.1 Turbo's), whose
    length is then its number of steps; None where the steps are free."""
    sigmas = files.index().get("sample_sigmas")
    return list(sigmas) if isinstance(sigmas, list) and sigmas else None


def free_fixed_schedule(pipe, steps: int) -> None:
    """Drop a loaded pipeline's fixed schedule (its config's ``sample_sigmas``) of another number of steps than the
    recipe's: the pipeline, classic or modular, would sample it and ignore ``num_inference_steps``; without it, it
    samples ``steps`` evenly spaced sigmas."""
    fixed = pipe.config.get("sample_sigmas")
    if fixed and len(fixed) != steps:
        pipe.register_to_config(sample_sigmas=None)


class SignatureGenerator(DiffusersGenerator):
    """A family whose recipe keys are those its pipeline's ``__call__`` takes (``call_parameters``). Where the family
    ships step-distilled models marked so in ``model_index.json`` (``is_distilled``), they get ``distilled``'s
    defaults, and a guidance value that would turn guidance on is a recipe error (their pipelines ignore it)."""

    flow_matching = True
    gpu_dtype = "bfloat16"
    size_factor = 16  # VAE 8 x patch 2, the usual DiT
    cfg_above: ClassVar[float] = 1.0  # classifier-free guidance (two passes a step) runs above this value
    distilled: ClassVar[FamilyDefaults | None] = None  # the defaults of its models marked ``is_distilled``

    def defaults(self, files: ModelFiles) -> FamilyDefaults:
        if self.distilled is not None and is_distilled(files):
            return self.distilled
        return super().defaults(files)

    @property
    def parameters(self) -> dict[str, Any]:
        return call_parameters(self.pipeline_classes[0]) or {}

    @property
    def negative_prompt(self) -> bool:  # type: ignore[override]
        return "negative_prompt" in self.parameters

    @property
    def guidance_parameter(self) -> str | None:
        """The call's parameter the recipe's guidance value goes to; None when the pipeline takes none."""
        return next((name for name in GUIDANCE_PARAMETERS if name in self.parameters), None)

    def passes(self, guidance_scale: float) -> int:
        return 2 if guidance_scale > self.cfg_above else 1

    def no_guidance(self, files: ModelFiles) -> str | None:
        """Why the model takes no guidance value (the pipeline takes none, or the model is step-distilled)."""
        if self.guidance_parameter is None:
            return f"none: {self.label} ({self.pipeline_classes[0]}) takes no guidance scale"
        if self.distilled is not None and is_distilled(files):
            return f"none: this {self.label} model is step-distilled and runs without guidance"
        return None

    def guidance(self, files: ModelFiles) -> str:
        if (reason := self.no_guidance(files)) is not None:
            return reason
        above = f"when above {self.cfg_above:g}"
        return f"classifier-free guidance (`{self.guidance_parameter}`; a second, unconditional pass per step {above})"

    def problems(self, recipe: Recipe, files: ModelFiles) -> list[str]:
        problems = super().problems(recipe, files)
        if (reason := self.no_guidance(files)) is not None:
            limit = self.cfg_above if self.guidance_parameter else 0
            problems += [
                f"{key}: {reason}; leave it out or set at most {limit:g}, got {value}"
                for key, value in recipe.guidance_settings()
                if value > limit
            ]
        return problems

    def guidance_arguments(self, guidance_scale: float) -> dict[str, Any]:
        return {self.guidance_parameter: guidance_scale} if self.guidance_parameter else {}


class Generic(SignatureGenerator):
    """A text-to-image pipeline class of no registered family: the defaults are its call's own (steps, guidance,
    sequence length), the size is its denoiser's ``sample_size`` times 8 or 1024, and no FLOPs were counted for it
    (``--dry-run`` gives no GPU-time estimate)."""

    name = "generic"
    card_tags = ()
    example = ""
    flops = None  # no reference architecture counted

    def __init__(self, pipeline_class: str):
        parameters = call_parameters(pipeline_class) or {}
        self.pipeline_classes = (pipeline_class,)
        self.label = pipeline_class
        self.image_to_image = image_to_image_for(pipeline_class)
        self.default_steps = number_or(parameters.get("num_inference_steps"), 50)
        guidance = next((parameters[name] for name in GUIDANCE_PARAMETERS if name in parameters), None)
        self.default_guidance = number_or(guidance, 0.0)
        sequence = parameters.get("max_sequence_length")
        self.max_sequence_length = self.default_sequence_length = sequence if isinstance(sequence, int) else None

    def guidance(self, files: ModelFiles) -> str:
        """A denoiser with a guidance embedding (``guidance_embeds`` in its config: FLUX.2 [dev]) takes the value
        as the embedding's strength, in one pass a step; any other, its call's classifier-free guidance."""
        if self.guidance_parameter == "guidance_scale" and files.config(self.denoiser).get("guidance_embeds"):
            return EMBEDDED_GUIDANCE
        return super().guidance(files)


def number_or(value: Any, fallback: float) -> Any:
    """``value`` where it is a number (a signature's or blocks' default; not a bool), else ``fallback``."""
    return value if isinstance(value, int | float) and not isinstance(value, bool) else fallback


@cache
def generic_for(pipeline_class: str) -> Generic | None:
    """The generic plug-in of a text-to-image pipeline class (one per class); None for any other class."""
    return Generic(pipeline_class) if is_text_to_image(pipeline_class) else None
