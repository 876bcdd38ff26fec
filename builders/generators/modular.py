"""Families diffusers ships as modular pipelines (``ModularPipeline``: a pipeline assembled from blocks, each
declaring the inputs it takes and the components it needs). FLUX.3 image klein exists only in this form.

A modular repo has a ``modular_model_index.json`` naming its pipeline class (``_class_name``), its blocks class
(``_blocks_class_name``) and where each component is loaded from. Which recipe keys apply is read from the blocks
alone, before any weights load: a negative prompt only where a block takes ``negative_prompt``, guidance only where
a block needs a ``guider`` (classifier-free guidance), ``model.max_sequence_length`` only where a block takes it.
Loading is diffusers' own: ``ModularPipeline.from_pretrained`` (configs only), the family's dropped steps taken
out of the blocks (FLUX.3's prompt upsampler, a 9B language model that takes one prompt per call), then
``load_components`` in the recipe's dtype. The text encoders of these pipelines take one prompt per call, so a
batch is made one call per distinct prompt, each image from its own seeded CPU generator: an image is the same
whichever batch, process or GPU makes it.
"""

from __future__ import annotations

from functools import cache
from typing import Any, ClassVar

import torch

from builders.generators.base import (
    CLASSIFIER_FREE,
    FamilyDefaults,
    Generator,
    LoadedGenerator,
    compile_in_place,
    set_vae_memory,
)
from builders.generators.generic import TEXT_TO_IMAGE, free_fixed_schedule, number_or, sample_sigmas
from builders.generators.known import MODULAR_INDEX
from builders.generators.safety import SafetyChecker
from builders.generators.sources import ModelFiles
from builders.plan import Job
from builders.recipe import Recipe
from builders.schedulers import make_scheduler
from synthcore.availability import DIFFUSERS_EXTRAS, DIFFUSERS_FILES, HubModel, ModelNeed
from synthcore.model_refs import Placement, is_local_path, resolve

# What the build downloads: the index, the components' configs, tokenizers (with chat templates) and weights.
MODULAR_FILES = (MODULAR_INDEX, *DIFFUSERS_FILES[1:])
# Generic modular pipelines whose blocks round sizes down to a coarser grid than the usual 16 (VAE 8 x patch 2), so
# a recipe's size off it would silently give smaller images: Qwen-Image 2.1's 16x VAE with its 2x2 token groups.
SIZE_FACTORS = {name: 32 for name in ("QwenImage21ModularPipeline", "QwenImage21TurboModularPipeline")}


@cache
def pipeline_blocks(pipeline_class: str, blocks_class: str | None, dropped: tuple[str, ...]):
    """The blocks a modular pipeline runs, as ``ModularPipeline`` picks them (the index's blocks class, else the
    pipeline class's default), without the ``dropped`` top-level steps. No weights are read."""
    import diffusers

    blocks_type = getattr(diffusers, blocks_class or "", None)
    if blocks_type is None or not getattr(blocks_type, "block_classes", None):
        blocks_type = getattr(diffusers, getattr(diffusers, pipeline_class).default_blocks_name)
    blocks = blocks_type()
    for name in dropped:
        blocks.sub_blocks.pop(name, None)
    return blocks


class ModularGenerator(Generator):
    """A family run by a diffusers ``ModularPipeline``; subclasses give the family's defaults and dropped steps."""

    negative_prompt = True  # decided per model from its blocks (``takes``), not per family
    dropped_steps: ClassVar[tuple[str, ...]] = ()  # top-level blocks taken out before loading

    def blocks(self, files: ModelFiles):
        index = files.index()
        return pipeline_blocks(files.pipeline_class(), index.get("_blocks_class_name"), self.dropped_steps)

    def takes(self, files: ModelFiles, name: str) -> bool:
        """Whether a block of the pipeline declares the input ``name``."""
        return any(param.name == name for param in self.blocks(files).inputs)

    def guided(self, files: ModelFiles) -> bool:
        """Whether the pipeline runs classifier-free guidance: a block needs a ``guider``, not disabled in its
        config (Z-Image's modular blocks carry one switched off: the Turbo samples without guidance)."""
        guider = _guider_spec(self.blocks(files))
        return guider is not None and (guider.config or {}).get("enabled", True) is not False

    def defaults(self, files: ModelFiles) -> FamilyDefaults:
        """The blocks' own defaults: their ``num_inference_steps`` and size (1024 where they give none), and the
        guidance scale of their guider's config (0 without guidance)."""
        blocks = self.blocks(files)
        declared = {param.name: param.default for param in blocks.inputs}
        guider = _guider_spec(blocks)
        guidance = (guider.config or {}).get("guidance_scale", 0.0) if self.guided(files) else 0.0

        height, width = (number_or(declared.get(key), self.default_size) for key in ("height", "width"))
        fixed = self.fixed_sigmas(files)
        steps = len(fixed) if fixed else number_or(declared.get("num_inference_steps"), 50)
        return FamilyDefaults(height, width, steps, float(guidance))

    def fixed_sigmas(self, files: ModelFiles) -> list[float] | None:
        """The sampling schedule the model's index fixes where a block reads one (the ``sample_sigmas`` config of
        Qwen-Image 2.1 Turbo's blocks, which then sample it whatever ``num_inference_steps`` says); else None."""
        configs = {spec.name for spec in self.blocks(files).expected_configs}
        return sample_sigmas(files) if "sample_sigmas" in configs else None

    def guidance(self, files: ModelFiles) -> str:
        if self.guided(files):
            return f"{CLASSIFIER_FREE}, by the pipeline's guider"
        return f"none: {files.pipeline_class()} is distilled to sample without guidance (guidance_scale 0)"

    def problems(self, recipe: Recipe, files: ModelFiles) -> list[str]:
        """The family's checks, and every recipe key the pipeline's blocks do not take, named with the pipeline."""
        problems = super().problems(recipe, files)
        pipeline = files.pipeline_class()
        if not self.takes(files, "negative_prompt"):
            problems += [
                f"{key}: {pipeline} takes no negative prompt (no block of it declares one); remove it"
                for key, value in self._negative_prompts(recipe)
                if value
            ]
        if not self.guided(files):
            problems += [
                f"{key}: {pipeline} has no guider ({self.guidance(files)}); leave it out or set 0, got {value}"
                for key, value in recipe.guidance_settings()
                if value
            ]
        if recipe.model.max_sequence_length is not None and not self.takes(files, "max_sequence_length"):
            problems.append(f"model.max_sequence_length: {pipeline} takes no max_sequence_length; remove it")
        if recipe.model.loras:
            problems.append(f"model.loras: LoRA adapters are not supported for modular pipelines ({pipeline}) yet")
        if recipe.model.cpu_offload:
            problems.append(f"model.cpu_offload: not supported for modular pipelines ({pipeline}) yet; remove it")
        return problems

    def pipeline_needs(self, recipe: Recipe) -> list[ModelNeed]:
        """The modular pipeline's index and the components it loads (not the dropped steps' ones, nor those the
        index takes from other repos); no modular family ships a safety checker, so the standalone one is added
        by ``model_needs`` when the recipe runs one."""
        settings = recipe.model
        skipped = self.components_elsewhere(ModelFiles(settings.id, settings.revision))
        return [
            HubModel(
                "model.id",
                settings.id,
                "diffusers modular pipeline",
                files=((MODULAR_INDEX,),),
                revision=settings.revision,
                index=MODULAR_INDEX,
                skip=skipped,
                include=MODULAR_FILES,
                exclude=(*DIFFUSERS_EXTRAS, *(f"{name}/*" for name in skipped)),  # a dropped step's model is not read
            )
        ]

    def components_elsewhere(self, files: ModelFiles) -> tuple[str, ...]:
        """Components of the index that are not loaded from the model's own files: those of dropped steps, and
        those the index points at another Hub repo for (diffusers fetches them from there; a local path in the
        index is where the pipeline was saved from, and diffusers loads the component from the model's files)."""
        try:
            index = files.modular_index() or {}
            needed = {spec.name for spec in self.blocks(files).expected_components}
        except (ValueError, AttributeError):
            return ()  # an unreadable index: the pipeline check reports it
        return tuple(
            name
            for name, value in index.items()
            if not name.startswith("_")
            and isinstance(value, list)
            and (name not in needed or _elsewhere(value, files.model_id))
        )

    def load(self, recipe: Recipe, placement: Placement) -> LoadedModular:
        return LoadedModular(self, recipe, placement)


def _guider_spec(blocks):
    return next((spec for spec in blocks.expected_components if spec.name == "guider"), None)


def _elsewhere(entry: list, model_id: str) -> bool:
    """Whether an index entry loads its component from a Hub repo other than the model's."""
    spec = entry[2] if len(entry) > 2 and isinstance(entry[2], dict) else {}
    source = spec.get("pretrained_model_name_or_path")
    return isinstance(source, str) and not is_local_path(source) and source != model_id


def load_modular(generator: ModularGenerator, recipe: Recipe, placement: Placement):
    """The recipe's modular pipeline on this process's device, loaded as diffusers documents it: the pipeline from
    its index, the family's dropped steps taken out, ``load_components`` in the placement's dtype. A fixed schedule
    (``sample_sigmas``) of another number of steps than the recipe's is dropped: its blocks would ignore the steps."""
    from diffusers import ModularPipeline

    settings = recipe.model
    ref = resolve(settings.id, "sd")
    found = ModularPipeline.from_pretrained(ref, revision=settings.revision)
    blocks = found.blocks
    for name in generator.dropped_steps:
        blocks.sub_blocks.pop(name, None)
    pipe = type(found)(blocks=blocks, pretrained_model_name_or_path=ref, revision=settings.revision)
    pipe.load_components(dtype=placement.dtype)
    free_fixed_schedule(pipe, recipe.generation.num_inference_steps)
    if settings.scheduler != "default":
        pipe.update_components(scheduler=make_scheduler(settings.scheduler, pipe.scheduler))
    pipe.to(placement.device)
    pipe.set_progress_bar_config(disable=True)
    set_vae_memory(pipe, settings)
    if settings.compile:
        compile_in_place(pipe, generator.denoiser)
    return pipe


class LoadedModular(LoadedGenerator):
    """A loaded modular pipeline, called once per distinct prompt of a batch (its text encoder takes one), with
    one CPU generator per image seeded from the plan; the standalone safety checker when the recipe asks."""

    def __init__(self, generator: ModularGenerator, recipe: Recipe, placement: Placement):
        super().__init__(recipe)
        files = ModelFiles(recipe.model.id, recipe.model.revision)
        self.guided = generator.guided(files)
        self.negative = generator.takes(files, "negative_prompt")
        self.pipe = load_modular(generator, recipe, placement)
        self.safety = (
            SafetyChecker.standalone(recipe.model.safety_checker_id, placement) if recipe.model.safety_checker else None
        )

    def flagged(self, images: torch.Tensor) -> list[bool]:
        return self.safety.flagged(images) if self.safety else [False] * len(images)

    def images(self, jobs: list[Job], seeds: list[int], guidance_scale: float) -> torch.Tensor:
        if self.guided:
            self.pipe.update_components(guider=self.pipe.guider.new(guidance_scale=guidance_scale))
        groups: dict[tuple[str, str], list[int]] = {}
        for i, job in enumerate(jobs):
            groups.setdefault((job.prompt, job.negative_prompt), []).append(i)
        parts = [
            self.call(prompt, negative, [seeds[i] for i in members]) for (prompt, negative), members in groups.items()
        ]
        order = torch.tensor([i for members in groups.values() for i in members])
        return torch.cat(parts)[torch.argsort(order).to(parts[0].device)]

    def call(self, prompt: str, negative_prompt: str, seeds: list[int]) -> torch.Tensor:
        """The images of one prompt, float (B, 3, H, W) in [0, 1] on the device."""
        gen, settings = self.recipe.generation, self.recipe.model
        extra: dict[str, Any] = {"negative_prompt": negative_prompt} if self.negative else {}
        if settings.max_sequence_length is not None:
            extra["max_sequence_length"] = settings.max_sequence_length
        return self.pipe(
            prompt=prompt,
            num_images_per_prompt=len(seeds),
            generator=[torch.Generator("cpu").manual_seed(seed) for seed in seeds],
            num_inference_steps=gen.num_inference_steps,
            height=gen.height,
            width=gen.width,
            output_type="pt",
            output="images",
            **extra,
        )


def is_modular_text_to_image(pipeline_class: str) -> bool:
    """Whether diffusers has a modular pipeline class of that name whose default blocks declare a ``text2image``
    workflow taking a prompt, steps, size and ``generator`` (and no video frames). Builds blocks, loads no weights."""
    import diffusers

    found = getattr(diffusers, pipeline_class, None) if pipeline_class.endswith("ModularPipeline") else None
    if not isinstance(found, type) or not getattr(found, "default_blocks_name", None):
        return False
    blocks = pipeline_blocks(pipeline_class, None, ())
    try:
        workflows = blocks.available_workflows
    except NotImplementedError:  # blocks that declare no workflows (Wan's)
        return False
    names = {param.name for param in blocks.inputs}
    return "text2image" in workflows and set(TEXT_TO_IMAGE) <= names and "num_frames" not in names


class GenericModular(ModularGenerator):
    """A modular text-to-image pipeline class of no registered family (Z-Image's, Qwen-Image 2.1 Turbo's, Krea 2
    Turbo's modular pipelines): its blocks' defaults, bfloat16 on a GPU, sizes in multiples of 16 (of 32 for
    Qwen-Image 2.1's: ``SIZE_FACTORS``), and no FLOPs counted (``--dry-run`` gives no GPU-time estimate)."""

    name = "generic-modular"
    card_tags = ()
    example = ""
    flops = None  # no reference architecture counted
    flow_matching = True
    gpu_dtype = "bfloat16"
    size_factor = 16
    max_sequence_length = 8192  # the blocks' own limit applies; only whether they take the key is checked
    default_steps = 50
    default_guidance = 0.0

    def __init__(self, pipeline_class: str):
        self.pipeline_classes = (pipeline_class,)
        self.label = pipeline_class
        self.size_factor = SIZE_FACTORS.get(pipeline_class, self.size_factor)


@cache
def generic_modular_for(pipeline_class: str) -> GenericModular | None:
    """The generic plug-in of a modular text-to-image pipeline class (one per class); None for any other class."""
    return GenericModular(pipeline_class) if is_modular_text_to_image(pipeline_class) else None
