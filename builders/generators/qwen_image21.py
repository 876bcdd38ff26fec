"""Qwen-Image 2.1 (``QwenImage21Pipeline``, Qwen): a single-stream, block-causal transformer over unpatched latents
of a 16x-compressing, 64-channel RGBA VAE, reading the prompt from the last hidden layer of a Qwen3-VL-8B encoder;
flow matching. Its classifier-free guidance is ``true_cfg_scale`` (two passes a step above 1, against the negative
prompt); the model is meant to be sampled without it. A model's ``model_index.json`` may fix its sampling schedule
(``sample_sigmas``: Qwen-Image 2.1 Turbo's eight sigmas), which then sets the number of steps. Its VAE decodes
RGBA; the build makes RGB of it over white (``base.opaque_rgb``). Its pipeline ships no safety checker.
"""

from __future__ import annotations

from pathlib import Path

from builders.generators.base import FamilyDefaults, FamilyFlops
from builders.generators.generic import SignatureGenerator, free_fixed_schedule, sample_sigmas
from builders.generators.sources import ModelFiles
from builders.recipe import Recipe
from synthcore.tiny import TINY_VL_TEXT_DIM, tiny_qwen3_vl, tiny_qwen3_vl_processor


class QwenImage21(SignatureGenerator):
    name = "qwen-image-2.1"
    tiny_names = ("qwen-image-2.1",)  # its tiny random pipelines (write_tiny), for tests and benchmarks
    label = "Qwen-Image 2.1"
    pipeline_classes = ("QwenImage21Pipeline",)
    example = "Qwen/Qwen-Image-2.1"
    card_tags = ("qwen-image",)
    size_factor = 32  # the VAE's 16 x the 2x2 groups the pipeline rounds to
    vae_scale = 16
    default_steps, default_guidance = 40, 1.0  # the pipeline's own: no guidance
    # GFLOPs counted by benchmarks/families.py on the reference architecture (families_architecture.json).
    flops = FamilyFlops(size=1024, denoiser=67272.7, vae_decode=17031.7, text_encoders=1397.5, reference=example)

    def defaults(self, files: ModelFiles) -> FamilyDefaults:
        """1024 px (the call's ``output_resolution``), no guidance, and as many steps as the model's fixed schedule
        has sigmas (Turbo: 8), else the call's 40."""
        sigmas = sample_sigmas(files)
        steps = len(sigmas) if sigmas else self.default_steps
        return FamilyDefaults(1024, 1024, steps, self.default_guidance)

    def prepare(self, pipe, recipe: Recipe) -> None:
        free_fixed_schedule(pipe, recipe.generation.num_inference_steps)

    def call_arguments(self, recipe: Recipe, jobs: list) -> dict:
        """The negative prompts only where guidance runs (the pipeline warns for each call that passes them
        without it, and ignores them)."""
        arguments = super().call_arguments(recipe, jobs)
        if jobs[0].guidance_scale <= self.cfg_above:
            arguments.pop("negative_prompt", None)
        return arguments

    def write_tiny(self, directory: Path, name: str) -> None:
        """Qwen-Image 2.1 as diffusers' tests build it: a two-layer transformer of width 32 on an 8-channel VAE
        with four 2x downsamplings (16x, as the pipeline assumes), the width-16 Qwen3-VL with its processor."""
        from diffusers import (
            AutoencoderKLQwenImage21,
            FlowMatchEulerDiscreteScheduler,
            QwenImage21Pipeline,
            QwenImage21Transformer2DModel,
        )

        z_dim, processor = 8, tiny_qwen3_vl_processor()
        transformer = QwenImage21Transformer2DModel(
            patch_size=1,
            in_channels=z_dim,
            out_channels=z_dim,
            num_layers=2,
            attention_head_dim=16,
            num_attention_heads=2,
            context_in_dim=TINY_VL_TEXT_DIM,
            mlp_ratio=2,
            axes_dims_rope=(4, 6, 6),
        )
        vae = AutoencoderKLQwenImage21(
            base_dim=4,
            decoder_base_dim=4,
            z_dim=z_dim,
            dim_mult=[1, 1, 1, 1, 1],
            num_res_blocks=1,
            attn_scales=[],
            temperal_downsample=[False, True, True, True],
            latents_mean=[0.0] * z_dim,
            latents_std=[1.0] * z_dim,
        )
        QwenImage21Pipeline(
            scheduler=FlowMatchEulerDiscreteScheduler(),
            vae=vae,
            text_encoder=tiny_qwen3_vl(processor.tokenizer).eval(),
            processor=processor,
            transformer=transformer,
        ).save_pretrained(directory)
