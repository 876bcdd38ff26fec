"""Stable Diffusion 3 and 3.5 (``StableDiffusion3Pipeline``): an MMDiT transformer trained with flow matching, two
CLIP text encoders and a T5-XXL encoder, classifier-free guidance. Its pipeline ships no safety checker."""

from __future__ import annotations

from builders.generators.base import DiffusersGenerator, FamilyFlops


class StableDiffusion3(DiffusersGenerator):
    name = "sd3"
    label = "Stable Diffusion 3.x"
    pipeline_classes = ("StableDiffusion3Pipeline",)
    example = "stabilityai/stable-diffusion-3.5-medium"
    card_tags = ("stable-diffusion", "stable-diffusion-3")
    size_factor = 16  # VAE 8 x patch 2
    flow_matching = True
    gpu_dtype = "bfloat16"
    max_sequence_length = 512
    text_encoders = ("text_encoder", "text_encoder_2", "text_encoder_3")
    latents_in_prompt_dtype = True
    default_sequence_length = 256
    default_steps = 28
    default_guidance = 7.0
    # GFLOPs counted by benchmarks/families.py on the reference architecture (families_architecture.json).
    flops = FamilyFlops(
        size=1024,
        denoiser=8904.3,
        vae_decode=10472.2,
        text_encoders=2507.8,
        reference="stabilityai/stable-diffusion-3-medium-diffusers",
    )
