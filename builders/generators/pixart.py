"""PixArt-Σ (``PixArtSigmaPipeline``): a DiT with cross-attention to a T5-XXL encoder, classifier-free guidance.

The pipeline's resolution binning (generate at the nearest trained aspect ratio, then resize) and caption cleaning
(which depends on optional packages being installed) are off: the image has exactly the recipe's size, and the
prompt in each row is exactly what the model read. Its pipeline ships no safety checker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from builders.generators.base import DiffusersGenerator, FamilyFlops
from builders.plan import Job
from builders.recipe import Recipe
from synthcore.tiny import T5_DIM, t5_encoder, t5_tokenizer, tiny_vae


class PixArtSigma(DiffusersGenerator):
    name = "pixart-sigma"
    tiny_names = ("pixart-sigma",)  # its tiny random pipelines (write_tiny), for tests and benchmarks
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

    def write_tiny(self, directory: Path, name: str) -> None:
        """PixArt-Σ: a DiT with adaLN-single and cross-attention to a T5 encoder; it predicts noise and variance."""
        from diffusers import DPMSolverMultistepScheduler, PixArtSigmaPipeline, PixArtTransformer2DModel

        tokenizer = t5_tokenizer()
        transformer = PixArtTransformer2DModel(
            sample_size=16,
            num_layers=2,
            patch_size=2,
            attention_head_dim=8,
            num_attention_heads=3,
            caption_channels=T5_DIM,
            in_channels=4,
            cross_attention_dim=24,
            out_channels=8,
            attention_bias=True,
            activation_fn="gelu-approximate",
            num_embeds_ada_norm=1000,
            norm_type="ada_norm_single",
            norm_elementwise_affine=False,
            norm_eps=1e-6,
        )
        PixArtSigmaPipeline(
            tokenizer=tokenizer,
            text_encoder=t5_encoder(tokenizer),
            vae=tiny_vae(),
            transformer=transformer.eval(),
            scheduler=DPMSolverMultistepScheduler(),
        ).save_pretrained(directory)
