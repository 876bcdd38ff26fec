"""Stable Diffusion 1.x/2.x (``StableDiffusionPipeline``): the first generator plug-in.

Images leave here as float tensors in [0, 1], shape (B, 3, H, W), still on the device, so scoring can use them
before anything is copied to the CPU. Every image's initial noise comes from its own CPU generator seeded with
the job's seed: the noise is the same whichever process, GPU or batch position makes the image.
"""

from __future__ import annotations

import torch

from builders.generators.base import Generator, LoadedGenerator
from builders.plan import Job
from builders.recipe import Recipe
from builders.schedulers import make_scheduler
from eval.scorers.clip import processor_preprocess
from synthcore.model_refs import Placement, resolve


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


class StableDiffusion(Generator):
    name = "stable-diffusion"
    pipeline_classes = ("StableDiffusionPipeline",)

    def load(self, recipe: Recipe, placement: Placement) -> LoadedStableDiffusion:
        return LoadedStableDiffusion(recipe, placement)


class LoadedStableDiffusion(LoadedGenerator):
    """The pipeline, with its safety checker taken out and run here on the device tensors: diffusers would turn
    every batch into PIL images on the CPU for its feature extractor, which makes the GPU wait. Its input gets
    the feature extractor's own resize, crop and normalization, done in torch (``eval.preprocess``).
    """

    def __init__(self, recipe: Recipe, placement: Placement):
        super().__init__(recipe)
        self.placement = placement
        self.pipe = load_pipeline(recipe, placement)
        self.safety_checker = self.pipe.safety_checker
        if self.safety_checker is not None:
            self.safety_input = processor_preprocess(self.pipe.feature_extractor)
            self.pipe.safety_checker = None

    def flagged(self, images: torch.Tensor) -> list[bool]:
        """The checker's verdict per image (it also blacks flagged images out, as in diffusers)."""
        if self.safety_checker is None:
            return [False] * len(images)
        clip_input = self.safety_input(images, self.placement.dtype)
        _, flagged = self.safety_checker(images=images, clip_input=clip_input)
        return [bool(f) for f in flagged]

    def images(self, jobs: list[Job], seeds: list[int], guidance_scale: float) -> torch.Tensor:
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
        return output.images
