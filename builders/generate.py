"""Generation: the diffusers pipeline, loaded once per process, turning planned batches into image tensors.

Images leave here as float tensors in [0, 1], shape (B, 3, H, W), still on the device, so scoring can use them
before anything is copied to the CPU. Every image's initial noise comes from its own CPU generator seeded with
the job's seed: the noise is the same whichever process, GPU or batch position makes the image.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from builders.models import Placement, resolve
from builders.plan import Batch, Job
from builders.recipe import Recipe
from builders.schedulers import make_scheduler

log = logging.getLogger(__name__)


@dataclass
class GeneratedBatch:
    """The kept images of one batch with the jobs they belong to and what the safety checker did."""

    jobs: list[Job]
    images: torch.Tensor
    seeds: list[int]
    safety_regenerations: list[int | None]
    dropped: list[Job]


def load_pipeline(recipe: Recipe, placement: Placement):
    """The recipe's Stable Diffusion pipeline on this process's device, with its speed settings applied."""
    from diffusers import StableDiffusionPipeline

    settings = recipe.model
    extra = {} if settings.safety_checker else {"safety_checker": None, "requires_safety_checker": False}
    pipe = StableDiffusionPipeline.from_pretrained(
        resolve(settings.id, "sd"), revision=settings.revision, dtype=placement.dtype, **extra
    )
    pipe.scheduler = make_scheduler(settings.scheduler, pipe.scheduler)
    pipe.to(placement.device)
    pipe.set_progress_bar_config(disable=True)
    if settings.attention == "sdpa":
        from diffusers.models.attention_processor import AttnProcessor2_0

        pipe.unet.set_attn_processor(AttnProcessor2_0())
        pipe.vae.set_attn_processor(AttnProcessor2_0())
    if settings.channels_last:
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
    if settings.compile:
        # In place (nn.Module.compile): the pipeline keeps its own UNet and VAE objects, whose type, config,
        # dtype and device it reads. Of the VAE, the decoder module (all of the decode's FLOPs) is compiled, not
        # the bound ``vae.decode``, which a wrapper would shadow with an instance attribute of another type.
        pipe.unet.compile()
        pipe.vae.decoder.compile()
    return pipe


class ImageGenerator:
    """Runs planned batches through the pipeline and applies the recipe's safety-checker policy.

    The safety checker is taken out of the pipeline and run here on the device tensors: diffusers would turn
    every batch into PIL images on the CPU for its feature extractor, which makes the GPU wait. Its input gets
    the feature extractor's own resize, crop and normalization, done in torch (``eval.preprocess``).
    """

    def __init__(self, recipe: Recipe, placement: Placement):
        self.recipe = recipe
        self.placement = placement
        self.pipe = load_pipeline(recipe, placement)
        self.safety_checker = self.pipe.safety_checker
        if self.safety_checker is not None:
            from eval.clip import processor_preprocess

            self.safety_input = processor_preprocess(self.pipe.feature_extractor)
            self.pipe.safety_checker = None

    def _flagged(self, images: torch.Tensor) -> list[bool]:
        """The safety checker's verdict per image (it also blacks flagged images out, as in diffusers)."""
        if self.safety_checker is None:
            return [False] * len(images)
        clip_input = self.safety_input(images, self.placement.dtype)
        _, flagged = self.safety_checker(images=images, clip_input=clip_input)
        return [bool(f) for f in flagged]

    def _call(self, jobs: list[Job], seeds: list[int], guidance_scale: float) -> tuple[torch.Tensor, list[bool]]:
        gen = self.recipe.generation
        output = self.pipe(
            prompt=[job.prompt for job in jobs],
            negative_prompt=[job.negative_prompt for job in jobs],
            guidance_scale=guidance_scale,
            num_inference_steps=gen.num_inference_steps,
            height=gen.height,
            width=gen.width,
            generator=[torch.Generator("cpu").manual_seed(seed) for seed in seeds],
            output_type="pt",
        )
        return output.images, self._flagged(output.images)

    @torch.inference_mode()
    def generate(self, batch: Batch) -> GeneratedBatch:
        jobs = list(batch.jobs)
        seeds = [job.seed for job in jobs]
        images, flagged = self._call(jobs, seeds, batch.guidance_scale)
        checker_on = self.recipe.model.safety_checker
        regenerations: list[int | None] = [0 if checker_on else None] * len(jobs)
        if self.recipe.model.on_flagged == "regenerate":
            for attempt in range(1, self.recipe.model.max_regenerations + 1):
                redo = [i for i, f in enumerate(flagged) if f]
                if not redo:
                    break
                new_seeds = [jobs[i].regeneration_seed(self.recipe.seed, attempt) for i in redo]
                new_images, new_flagged = self._call([jobs[i] for i in redo], new_seeds, batch.guidance_scale)
                for k, i in enumerate(redo):
                    images[i], flagged[i], seeds[i], regenerations[i] = new_images[k], new_flagged[k], new_seeds[k], attempt
        keep = [i for i, f in enumerate(flagged) if not f]
        dropped = [jobs[i] for i, f in enumerate(flagged) if f]
        if dropped:
            log.warning("safety checker flagged %d image(s) for good; dropped: %s", len(dropped), [j.id for j in dropped])
        return GeneratedBatch(
            jobs=[jobs[i] for i in keep],
            images=images[keep],
            seeds=[seeds[i] for i in keep],
            safety_regenerations=[regenerations[i] for i in keep],
            dropped=dropped,
        )


def to_uint8_hwc(images: torch.Tensor):
    """Float (B, 3, H, W) in [0, 1] on any device to a uint8 (B, H, W, 3) numpy array, as diffusers rounds."""
    return (images.float() * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
