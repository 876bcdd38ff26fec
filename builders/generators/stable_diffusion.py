"""Stable Diffusion 1.x/2.x (``StableDiffusionPipeline``): the first generator plug-in, and the default family.

Images leave here as float tensors in [0, 1], shape (B, 3, H, W), still on the device, so scoring can use them
before anything is copied to the CPU. Every image's initial noise comes from its own CPU generator seeded with
the job's seed: the noise is the same whichever process, GPU or batch position makes the image.
"""

from __future__ import annotations

from typing import Any

import torch

from builders.generators.base import DiffusersGenerator, FamilyFlops
from builders.recipe import Recipe

# SD 1.5's measured cost (benchmarks/sd15_architecture.json).
SD15_FLOPS = FamilyFlops(
    size=512,
    denoiser=803.3,
    vae_decode=2514.5,
    text_encoders=13.3,
    reference="stable-diffusion-v1-5/stable-diffusion-v1-5",
)


def use_sdpa_and_memory_format(pipe, recipe: Recipe) -> None:
    """The UNet families' attention kernels and memory format (``model.attention``, ``model.channels_last``)."""
    if recipe.model.attention == "sdpa":
        from diffusers.models.attention_processor import AttnProcessor2_0

        pipe.unet.set_attn_processor(AttnProcessor2_0())
        pipe.vae.set_attn_processor(AttnProcessor2_0())
    if recipe.model.channels_last:
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)


class StableDiffusion(DiffusersGenerator):
    name = "stable-diffusion"
    label = "Stable Diffusion 1.x/2.x"
    pipeline_classes = ("StableDiffusionPipeline",)
    image_to_image = "StableDiffusionImg2ImgPipeline"
    example = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    card_tags = ("stable-diffusion",)
    denoiser = "unet"
    default_size = 512  # tiny-random, whose files are not read before it is built
    default_steps = 50  # the reference exercise's
    default_guidance = 7.5
    flops = SD15_FLOPS

    def from_pretrained_arguments(self, recipe: Recipe) -> dict[str, Any]:
        return {} if recipe.model.safety_checker else {"safety_checker": None, "requires_safety_checker": False}

    def prepare(self, pipe, recipe: Recipe) -> None:
        use_sdpa_and_memory_format(pipe, recipe)
