"""FLUX.1 (``FluxPipeline``): a 12B flow-matching transformer over 2x2-packed latents, with a CLIP and a T5-XXL text
encoder. It takes no negative prompt. [dev] is guidance-distilled: ``guidance_scale`` is the strength fed to its
guidance embedding (one pass per step, not classifier-free guidance). [schnell] is timestep-distilled for 1 to 4
steps and has no guidance at all. Which one a model is, its transformer's config says (``guidance_embeds``).
Its pipeline ships no safety checker.
"""

from __future__ import annotations

from pathlib import Path

from builders.generators.base import DiffusersGenerator, FamilyDefaults, FamilyFlops
from builders.generators.sources import ModelFiles
from builders.recipe import Recipe
from synthcore.tiny import (
    FLUX_LIKE_BLOCKS,
    T5_DIM,
    TEXT_DIM,
    clip_tokenizer,
    t5_encoder,
    t5_tokenizer,
    text_config,
    tiny_vae,
)

DISTILLED = "FLUX.1 [dev]'s distilled guidance embedding (one pass per step; the value is the embedding's strength)"
NO_GUIDANCE = "none: FLUX.1 [schnell] is timestep-distilled and has no guidance (guidance_scale 0)"


def has_guidance_embedding(files: ModelFiles) -> bool:
    return bool(files.config("transformer").get("guidance_embeds", True))


class Flux(DiffusersGenerator):
    name = "flux"
    tiny_names = ("flux-dev", "flux-schnell")  # its tiny random pipelines (write_tiny), for tests and benchmarks
    label = "FLUX.1"
    pipeline_classes = ("FluxPipeline",)
    image_to_image = "FluxImg2ImgPipeline"
    example = "black-forest-labs/FLUX.1-schnell"
    card_tags = ("flux",)
    size_factor = 16  # VAE 8 x 2x2 packing
    negative_prompt = False
    flow_matching = True
    gpu_dtype = "bfloat16"
    max_sequence_length = 512
    text_encoders = ("text_encoder", "text_encoder_2")
    latents_in_prompt_dtype = True
    default_size = 1024
    # GFLOPs counted by benchmarks/families.py on the reference architecture (families_architecture.json).
    flops = FamilyFlops(
        size=1024, denoiser=74384.7, vae_decode=10472.2, text_encoders=4858.0, reference="black-forest-labs/FLUX.1-dev"
    )

    def defaults(self, files: ModelFiles) -> FamilyDefaults:
        """[dev]: 50 steps at guidance 3.5, 512 T5 tokens; [schnell]: 4 steps, no guidance, 256 T5 tokens."""
        if has_guidance_embedding(files):
            return FamilyDefaults(1024, 1024, 50, 3.5, 512)
        return FamilyDefaults(1024, 1024, 4, 0.0, 256)

    def guidance(self, files: ModelFiles) -> str:
        return DISTILLED if has_guidance_embedding(files) else NO_GUIDANCE

    def passes(self, guidance_scale: float) -> int:
        return 1

    def problems(self, recipe: Recipe, files: ModelFiles) -> list[str]:
        problems = super().problems(recipe, files)
        if not has_guidance_embedding(files):
            given = recipe.guidance_settings()
            problems += [f"{key}: {NO_GUIDANCE}; leave it out or set 0, got {value}" for key, value in given if value]
        return problems

    def write_tiny(self, directory: Path, name: str) -> None:
        """FLUX.1: a transformer over 2x2-packed latents, a CLIP text encoder (pooled) and a T5 encoder. [dev] has the
        distilled guidance embedding and a resolution-dependent timestep shift; [schnell] has neither."""
        from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
        from transformers import CLIPTextConfig, CLIPTextModel

        guidance_embeds = name == "flux-dev"
        tokenizer = clip_tokenizer(directory)
        t5 = t5_tokenizer()
        transformer = FluxTransformer2DModel(
            **FLUX_LIKE_BLOCKS,
            joint_attention_dim=T5_DIM,
            pooled_projection_dim=TEXT_DIM,
            axes_dims_rope=(4, 4, 8),
            guidance_embeds=guidance_embeds,
        )
        scheduler = (
            FlowMatchEulerDiscreteScheduler(
                shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256
            )
            if guidance_embeds
            else FlowMatchEulerDiscreteScheduler(shift=1.0)
        )
        FluxPipeline(
            scheduler=scheduler,
            vae=tiny_vae(
                1, use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.1159, scaling_factor=0.3611
            ),
            text_encoder=CLIPTextModel(CLIPTextConfig(**text_config(tokenizer))),
            tokenizer=tokenizer,
            text_encoder_2=t5_encoder(t5),
            tokenizer_2=t5,
            transformer=transformer,
        ).save_pretrained(directory)
