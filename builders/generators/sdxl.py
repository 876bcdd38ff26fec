"""Stable Diffusion XL (``StableDiffusionXLPipeline``): SDXL base, and its few-step distillations (SDXL-Turbo,
SDXL-Lightning, Hyper-SDXL; give them their step count and ``guidance_scale: 0``, or fuse a step-distillation LoRA).

A larger UNet with two CLIP text encoders (the second's pooled output and the image size condition every step);
classifier-free guidance as in SD 1.x. Its pipeline ships no safety checker.
"""

from __future__ import annotations

from builders.generators.base import DiffusersGenerator, FamilyFlops
from builders.generators.stable_diffusion import use_sdpa_and_memory_format
from builders.recipe import Recipe


class StableDiffusionXL(DiffusersGenerator):
    name = "sdxl"
    label = "Stable Diffusion XL"
    pipeline_classes = ("StableDiffusionXLPipeline",)
    example = "stabilityai/stable-diffusion-xl-base-1.0"
    card_tags = ("stable-diffusion", "stable-diffusion-xl")
    denoiser = "unet"
    default_steps = 50
    default_guidance = 5.0
    # GFLOPs counted by benchmarks/families.py on the reference architecture (families_architecture.json).
    flops = FamilyFlops(size=1024, denoiser=6761.2, vae_decode=10470.4, text_encoders=111.2, reference=example)

    def prepare(self, pipe, recipe: Recipe) -> None:
        use_sdpa_and_memory_format(pipe, recipe)
