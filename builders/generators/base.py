"""What a generator plug-in is: a diffusers text-to-image family, described before any weights load (its defaults,
its limits, what its guidance means, what it costs) and loaded on a device to turn a planned batch into image
tensors on that device, each image from its own planned seed.

A generator is one module under ``builders/generators/`` defining a ``Generator`` subclass, and one line in the
registry (``builders/generators/__init__.py``). What every family shares lives here: the recipe checks every family
makes (``problems``), filling the keys a recipe leaves out with the family's defaults (``resolve``), loading a
diffusers pipeline with the recipe's settings (``DiffusersGenerator``) and the safety-checker policy (regenerate
flagged images with derived seeds, or drop them: ``LoadedGenerator.generate``).
"""

from __future__ import annotations

import inspect
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from builders.generators.safety import SafetyChecker
from builders.generators.sources import ModelFiles, ships_safety_checker
from builders.plan import Batch, Job
from builders.recipe import Recipe
from builders.references import start_image
from builders.schedulers import SCHEDULERS, make_scheduler
from synthcore.availability import DecoderMemory, ModelNeed, diffusers_pipeline, lora_needs, transformers_model
from synthcore.model_refs import Placement, choose_dtype, resolve

log = logging.getLogger("synthdata.generate")

CLASSIFIER_FREE = "classifier-free guidance (a second, unconditional pass per step when above 1)"


@dataclass(frozen=True)
class FamilyDefaults:
    """What a recipe gets for the generation keys it leaves out."""

    height: int
    width: int
    num_inference_steps: int
    guidance_scale: float
    max_sequence_length: int | None = None


@dataclass(frozen=True)
class FamilyFlops:
    """GFLOPs of one image's pieces of work at ``size`` x ``size`` (batch 1), counted with torch's FLOP counter on
    the family's reference architecture with random weights (``benchmarks/families.py``). The denoiser and the VAE
    scale with the image's area; with classifier-free guidance the denoiser and the text encoders run twice."""

    size: int
    denoiser: float
    vae_decode: float
    text_encoders: float
    reference: str  # the checkpoint whose architecture was counted

    def tflops_per_image(self, height: int, width: int, steps: int, passes: int) -> float:
        area = height * width / self.size**2
        return (self.denoiser * area * steps * passes + self.vae_decode * area + self.text_encoders * passes) / 1000


@dataclass
class GeneratedBatch:
    """The kept images of one batch, float (B, 3, H, W) in [0, 1] on the device, with the jobs they belong to
    and what the safety checker did."""

    jobs: list[Job]
    images: torch.Tensor
    seeds: list[int]
    safety_regenerations: list[int | None]
    dropped: list[Job]


class Generator(ABC):
    """A generator plug-in (stateless: one instance in the registry). The class attributes describe the family."""

    name: ClassVar[str]  # short name, e.g. "flux"
    label: ClassVar[str]  # what the card calls it, e.g. "FLUX.1"
    pipeline_classes: ClassVar[tuple[str, ...]]  # the diffusers pipeline classes (model_index.json) it runs
    example: ClassVar[str]  # a Hub id of the family
    card_tags: ClassVar[tuple[str, ...]]  # the dataset card's Hub tags naming the family (beside "synthetic")
    size_factor: ClassVar[int] = 8  # height and width must be multiples of this (VAE downsampling x patch size)
    negative_prompt: ClassVar[bool] = True  # whether the family takes a negative prompt
    flow_matching: ClassVar[bool] = False  # a flow-matching model: noise-prediction schedulers do not apply
    gpu_dtype: ClassVar[str] = "float16"  # what ``model.dtype: auto`` means on a GPU
    max_sequence_length: ClassVar[int | None] = None  # the longest prompt its T5/Gemma encoder takes; None: none
    # The text encoders ``model.text_encoder_dtype`` loads in its own dtype; () where it cannot apply (the pipeline
    # casts prompt embeddings back to its text encoder's dtype, so they would not match the denoiser's).
    text_encoders: ClassVar[tuple[str, ...]] = ()
    latents_in_prompt_dtype: ClassVar[bool] = False  # its pipeline makes latents in the prompt embeddings' dtype
    denoiser: ClassVar[str] = "transformer"  # the pipeline attribute that runs every step
    # diffusers' image-to-image pipeline of the family, built on the same components (``from_pipe``) for classes
    # with reference images (``docs/guidance.md``); None: diffusers has none, and such a recipe is refused.
    image_to_image: ClassVar[str | None] = None
    vae_scale: ClassVar[int] = 8  # pixels per latent pixel
    default_size: ClassVar[int] = 1024  # when the denoiser's config gives no native size
    default_steps: ClassVar[int]
    default_guidance: ClassVar[float]
    default_sequence_length: ClassVar[int | None] = None
    flops: ClassVar[FamilyFlops | None]  # None: no reference architecture counted (no GPU-time estimate)
    # Its tiny random pipelines, for tests and benchmarks (``builders.generators.tiny.tiny_family_dir``); () for
    # Stable Diffusion, whose tiny pipeline is the shared ``tiny-random`` one (``synthcore.tiny``).
    tiny_names: ClassVar[tuple[str, ...]] = ()

    def write_tiny(self, directory: Path, name: str) -> None:
        """Save the tiny random pipeline ``name`` (one of ``tiny_names``) in ``directory``: the family's
        architecture at toy sizes with random weights, shaped as in diffusers' own tests (``get_dummy_components``),
        loadable with ``from_pretrained``. Called once, seeded, by ``tiny_family_dir``, which caches the result."""
        raise NotImplementedError(f"{self.label} has no tiny random pipeline of its own")

    def defaults(self, files: ModelFiles) -> FamilyDefaults:
        """The family's defaults for this model, at the size it was trained for: the denoiser's ``sample_size``
        (in latent pixels) times the VAE's scale, as the pipeline itself defaults (SDXL-Turbo 512, SDXL 1024)."""
        sample = files.config(self.denoiser).get("sample_size")
        size = sample * self.vae_scale if isinstance(sample, int) else self.default_size
        return FamilyDefaults(size, size, self.default_steps, self.default_guidance, self.default_sequence_length)

    def guidance(self, files: ModelFiles) -> str:
        """What ``guidance_scale`` means for this model, in the card's words."""
        return CLASSIFIER_FREE

    def passes(self, guidance_scale: float) -> int:
        """Denoiser passes per step: two with classifier-free guidance above 1."""
        return 2 if guidance_scale > 1 else 1

    def problems(self, recipe: Recipe, files: ModelFiles) -> list[str]:
        """Recipe settings this family does not support, as recipe problems with their key paths."""
        gen, model = recipe.generation, recipe.model
        problems = [
            f"generation.{key}: {self.label} needs a multiple of {self.size_factor} (the VAE's downsampling times "
            f"the patch size), got {value}"
            for key, value in (("height", gen.height), ("width", gen.width))
            if value % self.size_factor
        ]
        if not self.negative_prompt:
            problems += [
                f"{key}: {self.label} takes no negative prompt ({self.guidance(files)}); remove it"
                for key, value in self._negative_prompts(recipe)
                if value
            ]
        if self.flow_matching and model.scheduler in SCHEDULERS:
            problems.append(
                f"model.scheduler: {model.scheduler!r} is a noise-prediction scheduler and {self.label} is a "
                "flow-matching model; use 'default' (its own) or a FlowMatch... scheduler class name"
            )
        if model.text_encoder_dtype is not None and not self.text_encoders:
            problems.append(
                f"model.text_encoder_dtype: {self.label}'s pipeline casts prompt embeddings to its text encoders' "
                "dtype, so they must run in model.dtype (the denoiser's); remove it"
            )
        if model.max_sequence_length is not None:
            if self.max_sequence_length is None:
                problems.append(f"model.max_sequence_length: {self.label} has no T5-like text encoder to limit")
            elif model.max_sequence_length > self.max_sequence_length:
                problems.append(
                    f"model.max_sequence_length: {self.label} takes at most {self.max_sequence_length} tokens, "
                    f"got {model.max_sequence_length}"
                )
        return problems + self._reference_problems(recipe, files)

    def _reference_problems(self, recipe: Recipe, files: ModelFiles) -> list[str]:
        """Classes with reference images need an image-to-image pipeline, and a strength that leaves at least one
        of the steps to run (diffusers runs ``int(num_inference_steps * strength)`` of them)."""
        guided = [name for name, spec in recipe.classes.items() if spec.reference_images is not None]
        if guided and self.image_to_image is None:
            return [
                f"classes.{name}.reference_images: {self.label} has no image-to-image pipeline in diffusers, so its "
                "images cannot start from reference images (see docs/guidance.md for the families that can)"
                for name in guided
            ]
        gen = recipe.generation
        steps = gen.num_inference_steps
        if "num_inference_steps" not in gen.model_fields_set:
            steps = self.defaults(files).num_inference_steps
        return [
            f"classes.{name}.strength: {recipe.strength_of(name)} of {steps} steps (generation.num_inference_steps) "
            "runs no denoising step; raise the strength or the steps so that their product reaches 1"
            for name in guided
            if int(steps * recipe.strength_of(name)) < 1
        ]

    @staticmethod
    def _negative_prompts(recipe: Recipe) -> list[tuple[str, str]]:
        return [("negative_prompt", recipe.negative_prompt)] + [
            (f"classes.{name}.negative_prompt", spec.negative_prompt or "") for name, spec in recipe.classes.items()
        ]

    def resolve(self, recipe: Recipe, files: ModelFiles) -> Recipe:
        """The recipe with the family's defaults in every key it left out, and its pipeline class recorded."""
        defaults = self.defaults(files)
        gen, model = recipe.generation, recipe.model
        filled = {
            key: getattr(defaults, key)
            for key in ("height", "width", "num_inference_steps", "guidance_scale")
            if key not in gen.model_fields_set
        }
        model_update: dict[str, Any] = {"pipeline": files.pipeline_class()}
        if "max_sequence_length" not in model.model_fields_set:
            model_update["max_sequence_length"] = defaults.max_sequence_length
        return recipe.model_copy(
            update={"generation": gen.model_copy(update=filled), "model": model.model_copy(update=model_update)}
        )

    def tflops_per_image(self, recipe: Recipe, guidance_scale: float) -> float:
        gen = recipe.generation
        passes = self.passes(guidance_scale)
        return self.flops.tflops_per_image(gen.height, gen.width, gen.num_inference_steps, passes)

    def describe(self, recipe: Recipe, files: ModelFiles) -> dict[str, Any]:
        """What the card and build_info.json say about the generator: family, guidance, safety checker, LoRAs."""
        model = recipe.model
        if not model.safety_checker:
            safety = "off"
        elif files.ships_safety_checker():
            safety = "the pipeline's own"
        else:
            safety = f"standalone Stable Diffusion safety checker ({model.safety_checker_id})"
        return {
            "family": self.label,
            "pipeline": files.pipeline_class(),
            "guidance": self.guidance(files),
            "safety_checker": safety,
            "loras": [lora.model_dump(mode="json") for lora in model.loras],
        }

    def model_needs(self, recipe: Recipe, device_type: str) -> list[ModelNeed]:
        """What the build loads for this family (``synthcore.availability``, checked before anything loads): the
        pipeline with its own safety checker when it ships one and the recipe runs it, the LoRA adapters fused
        into it, the standalone checker otherwise, and whether its VAE can decode one image of the recipe's size
        on this device. Symmetric with ``eval.scorers.base.Scorer.model_refs``."""
        settings, gen = recipe.model, recipe.generation
        standalone = (
            []
            if not settings.safety_checker or ships_safety_checker(settings.id, settings.revision)
            else [
                transformers_model(
                    "model.safety_checker_id", settings.safety_checker_id, "safety checker", processor=False
                )
            ]
        )
        decoder = DecoderMemory(
            key="generation.height, generation.width",
            ref=settings.id,
            what="pipeline",
            revision=settings.revision,
            height=gen.height,
            width=gen.width,
            dtype_name=choose_dtype(settings.dtype, device_type),
            device_type=device_type,
        )
        return [*self.pipeline_needs(recipe), *standalone, decoder]

    def pipeline_needs(self, recipe: Recipe) -> list[ModelNeed]:
        """The pipeline's own files (``pipeline_needs``; a modular pipeline's index differs)."""
        return pipeline_needs(recipe)

    @abstractmethod
    def load(self, recipe: Recipe, placement: Placement) -> LoadedGenerator:
        """The pipeline on ``placement``'s device and dtype, with the recipe's speed settings applied."""


def pipeline_needs(recipe: Recipe) -> list[ModelNeed]:
    """The pipeline, with its own safety checker when it ships one and the recipe runs it, and the LoRA adapters
    fused into it, each checked against the pipeline's denoiser (a LoRA for another architecture is found here,
    not after the models load): what any family needs, known before the family is read."""
    settings = recipe.model
    own_checker = settings.safety_checker and ships_safety_checker(settings.id, settings.revision)
    pipeline = diffusers_pipeline("model.id", settings.id, settings.revision, own_checker, "model.safety_checker")
    return [pipeline, *lora_needs("model.loras", settings.loras, settings.id, settings.revision)]


class LoadedGenerator(ABC):
    """A loaded pipeline: ``images`` makes pixels, ``flagged`` judges them; ``generate`` applies the policy."""

    def __init__(self, recipe: Recipe):
        self.recipe = recipe

    @abstractmethod
    def images(self, jobs: list[Job], seeds: list[int], guidance_scale: float) -> torch.Tensor:
        """Float (B, 3, H, W) in [0, 1] on the device; image i's initial noise from a CPU generator seeded with
        ``seeds[i]``, so it is the same whichever process, GPU or batch position makes it."""

    def flagged(self, images: torch.Tensor) -> list[bool]:
        """The safety checker's verdict per image (none flagged when the recipe has no checker)."""
        return [False] * len(images)

    def planned_shape_images(self, jobs: list[Job], seeds: list[int], guidance_scale: float) -> torch.Tensor:
        """``images``, and with ``model.compile`` always at the planned batch size: a tail batch or a batch of
        regenerations is padded with copies of its last job, whose outputs are discarded. The compiled graphs then
        see one shape, so a build compiles once instead of once per tail batch and regeneration count (each a
        minute or more on a GPU)."""
        planned = self.recipe.generation.batch_size
        if not self.recipe.model.compile or len(jobs) >= planned:
            return opaque_rgb(self.images(jobs, seeds, guidance_scale))
        pad = planned - len(jobs)
        return opaque_rgb(self.images(jobs + [jobs[-1]] * pad, seeds + [seeds[-1]] * pad, guidance_scale)[: len(jobs)])

    def images_by_guidance(self, jobs: list[Job], seeds: list[int]) -> torch.Tensor:
        """``planned_shape_images`` once per distinct guidance value among the jobs (a guidance sweep mixes them
        within a batch; a pipeline call takes one), each call padded as planned; the images in the jobs' order."""
        groups: dict[float, list[int]] = {}
        for i, job in enumerate(jobs):
            groups.setdefault(job.guidance_scale, []).append(i)
        if len(groups) == 1:
            return self.planned_shape_images(jobs, seeds, jobs[0].guidance_scale)
        parts = [
            self.planned_shape_images([jobs[i] for i in members], [seeds[i] for i in members], guidance)
            for guidance, members in groups.items()
        ]
        order = torch.tensor([i for members in groups.values() for i in members])
        return torch.cat(parts)[torch.argsort(order).to(parts[0].device)]

    @torch.inference_mode()
    def generate(self, batch: Batch) -> GeneratedBatch:
        jobs = list(batch.jobs)
        seeds = [job.seed for job in jobs]
        images = self.images_by_guidance(jobs, seeds)
        flagged = self.flagged(images)
        settings = self.recipe.model
        regenerations: list[int | None] = [0 if settings.safety_checker else None] * len(jobs)
        if settings.on_flagged == "regenerate":
            for attempt in range(1, settings.max_regenerations + 1):
                redo = [i for i, f in enumerate(flagged) if f]
                if not redo:
                    break
                new_seeds = [jobs[i].regeneration_seed(self.recipe.seed, attempt) for i in redo]
                new_images = self.images_by_guidance([jobs[i] for i in redo], new_seeds)
                new_flagged = self.flagged(new_images)
                for k, i in enumerate(redo):
                    images[i], flagged[i], seeds[i], regenerations[i] = (
                        new_images[k],
                        new_flagged[k],
                        new_seeds[k],
                        attempt,
                    )
        keep = [i for i, f in enumerate(flagged) if not f]
        dropped = [jobs[i] for i, f in enumerate(flagged) if f]
        if dropped:
            log.warning(
                "safety checker flagged %d image(s) for good; dropped: %s", len(dropped), [j.id for j in dropped]
            )
        return GeneratedBatch(
            jobs=[jobs[i] for i in keep],
            images=images[keep],
            seeds=[seeds[i] for i in keep],
            safety_regenerations=[regenerations[i] for i in keep],
            dropped=dropped,
        )


def opaque_rgb(images: torch.Tensor) -> torch.Tensor:
    """An RGBA batch (Qwen-Image 2.1's VAE decodes an alpha channel) as RGB over white, as the dataset's images are
    RGB; an RGB batch as it is."""
    if images.shape[1] != 4:
        return images
    rgb, alpha = images[:, :3], images[:, 3:]
    return rgb * alpha + (1 - alpha)


class DiffusersGenerator(Generator):
    """A family run by its diffusers pipeline class; subclasses say what differs (``call_arguments``, ``prepare``)."""

    def load(self, recipe: Recipe, placement: Placement) -> LoadedPipeline:
        return LoadedPipeline(self, recipe, placement)

    def from_pretrained_arguments(self, recipe: Recipe) -> dict[str, Any]:
        """Extra ``from_pretrained`` arguments of the family."""
        return {}

    def prepare(self, pipe, recipe: Recipe) -> None:
        """Family-specific settings of a loaded pipeline (attention kernels, memory formats)."""

    def guidance_arguments(self, guidance_scale: float) -> dict[str, Any]:
        """The pipeline call's guidance argument (``SignatureGenerator``: the one its call takes, if any)."""
        return {"guidance_scale": guidance_scale}

    def call_arguments(self, recipe: Recipe, jobs: list[Job]) -> dict[str, Any]:
        """The pipeline call's family-specific arguments for a batch."""
        arguments: dict[str, Any] = {}
        if self.negative_prompt:
            arguments["negative_prompt"] = [job.negative_prompt for job in jobs]
        if recipe.model.max_sequence_length is not None:
            arguments["max_sequence_length"] = recipe.model.max_sequence_length
        return arguments


def load_pipeline(generator: DiffusersGenerator, recipe: Recipe, placement: Placement):
    """The recipe's pipeline on this process's device: LoRAs fused, then the speed and memory settings applied."""
    import diffusers

    settings = recipe.model
    pipeline_class = getattr(diffusers, settings.pipeline or generator.pipeline_classes[0])
    pipe = pipeline_class.from_pretrained(
        resolve(settings.id, "sd"),
        revision=settings.revision,
        dtype=component_dtypes(generator, settings.text_encoder_dtype, placement),
        **generator.from_pretrained_arguments(recipe),
    )
    pipe.scheduler = make_scheduler(settings.scheduler, pipe.scheduler)
    fuse_loras(pipe, recipe)
    if settings.cpu_offload and placement.device != "cpu":
        pipe.enable_model_cpu_offload(device=placement.device)
    else:
        pipe.to(placement.device)
    pipe.set_progress_bar_config(disable=True)
    set_vae_memory(pipe, settings)
    generator.prepare(pipe, recipe)
    if settings.text_encoder_dtype and generator.latents_in_prompt_dtype:
        encode_prompts_in_denoiser_dtype(pipe, getattr(pipe, generator.denoiser).dtype)
    if settings.compile:
        compile_in_place(pipe, generator.denoiser)
    return pipe


def set_vae_memory(pipe, settings) -> None:
    """``model.vae_slicing`` and ``model.vae_tiling`` on the pipeline's VAE (classic or modular)."""
    if settings.vae_slicing:
        pipe.vae.enable_slicing()
    if settings.vae_tiling:
        pipe.vae.enable_tiling()


def compile_in_place(pipe, denoiser: str) -> None:
    """``model.compile``, in place (nn.Module.compile): the pipeline keeps its own denoiser and VAE objects, whose
    type, config, dtype and device it reads. Of the VAE, the decoder module (all of the decode's FLOPs) is compiled,
    not the bound ``vae.decode``, which a wrapper would shadow with an instance attribute of another type."""
    getattr(pipe, denoiser).compile()
    pipe.vae.decoder.compile()


def component_dtypes(generator: Generator, text_encoder_dtype: str | None, placement: Placement):
    """``from_pretrained``'s dtype: the placement's, with the text encoders in ``model.text_encoder_dtype`` if set."""
    if text_encoder_dtype is None:
        return placement.dtype
    return {"default": placement.dtype} | {name: getattr(torch, text_encoder_dtype) for name in generator.text_encoders}


def encode_prompts_in_denoiser_dtype(pipe, dtype: torch.dtype) -> None:
    """Make the pipeline's own ``encode_prompt`` return its embeddings in the denoiser's ``dtype``. SD3 and FLUX.1
    make their initial latents in the dtype of the prompt embeddings, so text encoders in another dtype
    (``model.text_encoder_dtype``) would otherwise hand the denoiser latents it cannot take."""
    encode = pipe.encode_prompt

    def encode_prompt(*args, **kwargs):
        return tuple(
            value.to(dtype) if isinstance(value, torch.Tensor) and value.is_floating_point() else value
            for value in encode(*args, **kwargs)
        )

    pipe.encode_prompt = encode_prompt


def fuse_loras(pipe, recipe: Recipe) -> None:
    """Load the recipe's LoRA adapters, fuse them into the weights at their scales and drop the adapter layers, so
    the pipeline runs (and compiles) as a plain one."""
    loras = recipe.model.loras
    if not loras:
        return
    names = [f"lora{i}" for i in range(len(loras))]
    for name, lora in zip(names, loras):
        pipe.load_lora_weights(resolve(lora.id, "lora"), weight_name=lora.weight_name, adapter_name=name)
    pipe.set_adapters(names, adapter_weights=[lora.scale for lora in loras])
    pipe.fuse_lora(adapter_names=names, lora_scale=1.0)
    pipe.unload_lora_weights()


class LoadedPipeline(LoadedGenerator):
    """The pipeline, with any safety checker it ships taken out and run here on the device tensors (diffusers would
    turn every batch into PIL images on the CPU for its feature extractor, which makes the GPU wait). A family
    without a checker gets the standalone Stable Diffusion checker when the recipe asks for one."""

    def __init__(self, generator: DiffusersGenerator, recipe: Recipe, placement: Placement):
        super().__init__(recipe)
        self.generator = generator
        self.pipe = load_pipeline(generator, recipe, placement)
        self._image_to_image = None
        self.safety: SafetyChecker | None = None
        if recipe.model.safety_checker:
            self.safety = SafetyChecker.of_pipeline(self.pipe, placement) or SafetyChecker.standalone(
                recipe.model.safety_checker_id, placement
            )

    def flagged(self, images: torch.Tensor) -> list[bool]:
        return self.safety.flagged(images) if self.safety else [False] * len(images)

    def images(self, jobs: list[Job], seeds: list[int], guidance_scale: float) -> torch.Tensor:
        gen = self.recipe.generation
        if jobs[0].reference is None:
            pipe, arguments = self.pipe, {"height": gen.height, "width": gen.width}
        else:
            pipe, arguments = self.image_to_image(), self.start_images(jobs)
        output = pipe(
            prompt=[job.prompt for job in jobs],
            num_inference_steps=gen.num_inference_steps,
            generator=[torch.Generator("cpu").manual_seed(seed) for seed in seeds],
            output_type="pt",
            **self.generator.guidance_arguments(guidance_scale),
            **arguments,
            **self.generator.call_arguments(self.recipe, jobs),
        )
        return output.images

    def image_to_image(self):
        """The family's image-to-image pipeline on the text-to-image one's components (``from_pipe``: the same
        modules, no second copy of the weights), made on first use."""
        if self._image_to_image is None:
            import diffusers

            self._image_to_image = getattr(diffusers, self.generator.image_to_image).from_pipe(self.pipe)
            self._image_to_image.set_progress_bar_config(disable=True)
        return self._image_to_image

    def start_images(self, jobs: list[Job]) -> dict[str, Any]:
        """The image-to-image arguments of a batch of one class: each job's reference fitted to the generation
        size (``builders.references.start_image``), and the class's strength."""
        gen = self.recipe.generation
        arguments = {"image": start_images(self.recipe, jobs), "strength": jobs[0].strength}
        if "height" in inspect.signature(self.image_to_image().__call__).parameters:  # FLUX.1, SD3: else their own
            arguments |= {"height": gen.height, "width": gen.width}
        return arguments


def start_images(recipe: Recipe, jobs: list[Job]) -> list:
    """The PIL images the jobs' image-to-image calls start from: each one's reference fitted to the generation
    size (``builders.references.start_image``)."""
    gen = recipe.generation
    return [start_image(recipe.reference_path(job.class_name, job.reference), gen.width, gen.height) for job in jobs]


def to_uint8_hwc(images: torch.Tensor):
    """Float (B, 3, H, W) in [0, 1] on any device to a uint8 (B, H, W, 3) numpy array, as diffusers rounds."""
    return (images.float() * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
