"""PixArt-Σ (``PixArtSigmaPipeline``): a DiT with cross-attention to a T5-XXL encoder, classifier-free guidance.

The pipeline's resolution binning (generate at the nearest trained aspect ratio, then resize) and caption cleaning
(which depends on optional packages being installed) are off: the image has exactly the recipe's size, and the
prompt in each row is exactly what the model read. Its pipeline ships no safety checker.
"""

from __future__ import annotations

from typing import Any

from builders.generators.base import DiffusersGenerator, FamilyFlops
from builders.plan import Job
from builders.recipe import Recipe


class PixArtSigma(DiffusersGenerator):
    name = "pixart-sigma"
    label = "PixArt-Σ"
    pipeline_classes = ("PixArtSigmaPipeline",)
    example = "PixArt-alpha/PixArt-Sigma-XL-2-1024-MS"
    card_tags = ("pixart-sigma",)
    size_factor = 16  # VAE 8 x patch 2
    max_sequence_length = 300
    default_sequence_length = 300
    default_steps = 20
    default_guidance = 4.5
    # GFLOPs counted by benchmarks/families.py on the reference architecture (families_architecture.json).
    flops = FamilyFlops(size=1024, denoiser=6633.6, vae_decode=10470.4, text_encoders=2813.7, reference=example)

    def call_arguments(self, recipe: Recipe, jobs: list[Job]) -> dict[str, Any]:
        return super().call_arguments(recipe, jobs) | {"use_resolution_binning": False, "clean_caption": False}
