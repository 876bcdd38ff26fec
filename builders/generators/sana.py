"""Sana (``SanaPipeline``): a linear-attention DiT on a 32x deep-compression autoencoder (DC-AE), with a Gemma 2
text encoder that reads the prompt after the model's own instruction preamble; flow matching, classifier-free
guidance. Resolution binning and caption cleaning are off, as for PixArt-Σ. Its pipeline ships no safety checker.
"""

from __future__ import annotations

from typing import Any

from builders.generators.base import DiffusersGenerator, FamilyFlops
from builders.plan import Job
from builders.recipe import Recipe


class Sana(DiffusersGenerator):
    name = "sana"
    label = "Sana"
    pipeline_classes = ("SanaPipeline",)
    example = "Efficient-Large-Model/Sana_1600M_1024px_diffusers"
    card_tags = ("sana",)
    size_factor = 32  # DC-AE 32 x patch 1
    vae_scale = 32
    flow_matching = True
    gpu_dtype = "bfloat16"
    max_sequence_length = 300
    text_encoders = ("text_encoder",)  # its pipeline casts prompt embeddings to the transformer's dtype
    default_sequence_length = 300
    default_steps = 20
    default_guidance = 4.5
    # GFLOPs counted by benchmarks/families.py on the reference architecture (families_architecture.json).
    flops = FamilyFlops(size=1024, denoiser=2966.7, vae_decode=8368.6, text_encoders=1233.7, reference=example)

    def call_arguments(self, recipe: Recipe, jobs: list[Job]) -> dict[str, Any]:
        return super().call_arguments(recipe, jobs) | {"use_resolution_binning": False, "clean_caption": False}
