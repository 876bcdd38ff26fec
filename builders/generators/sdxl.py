"""Stable Diffusion XL (``StableDiffusionXLPipeline``): SDXL base, and its few-step distillations (SDXL-Turbo,
SDXL-Lightning, Hyper-SDXL; give them their step count and ``guidance_scale: 0``, or fuse a step-distillation LoRA).

A larger UNet with two CLIP text encoders (the second's pooled output and the image size condition every step);
classifier-free guidance as in SD 1.x. Its pipeline ships no safety checker.
"""

from __future__ import annotations

from pathlib import Path

from builders.generators.base import DiffusersGenerator, FamilyFlops
from builders.generators.stable_diffusion import use_sdpa_and_memory_format
from builders.recipe import Recipe
from synthcore.tiny import TEXT_DIM, clip_tokenizer, text_config, tiny_vae


class StableDiffusionXL(DiffusersGenerator):
    name = "sdxl"
    tiny_names = ("sdxl",)  # its tiny random pipelines (write_tiny), for tests and benchmarks
    label = "Stable Diffusion XL"
    pipeline_classes = ("StableDiffusionXLPipeline",)
    image_to_image = "StableDiffusionXLImg2ImgPipeline"
    example = "stabilityai/stable-diffusion-xl-base-1.0"
    card_tags = ("stable-diffusion", "stable-diffusion-xl")
    denoiser = "unet"
    default_steps = 50
    default_guidance = 5.0
    # GFLOPs counted by benchmarks/families.py on the reference architecture (families_architecture.json).
    flops = FamilyFlops(size=1024, denoiser=6761.2, vae_decode=10470.4, text_encoders=111.2, reference=example)

    def prepare(self, pipe, recipe: Recipe) -> None:
        use_sdpa_and_memory_format(pipe, recipe)

    def write_tiny(self, directory: Path, name: str) -> None:
        """SDXL: a UNet with the micro-conditioning (time ids) embedding, two CLIP text encoders, the second with a
        projection whose pooled output joins the time ids."""
        from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
        from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

        tokenizer = clip_tokenizer(directory)
        time_dim = 8
        unet = UNet2DConditionModel(
            sample_size=16,
            block_out_channels=(8, 16),
            layers_per_block=1,
            in_channels=4,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(2, 4),
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=time_dim,
            transformer_layers_per_block=(1, 2),
            projection_class_embeddings_input_dim=6 * time_dim + TEXT_DIM,
            cross_attention_dim=2 * TEXT_DIM,
            norm_num_groups=4,
        )
        # SDXL's own scheduler config (stabilityai/stable-diffusion-xl-base-1.0).
        scheduler = EulerDiscreteScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            steps_offset=1,
            timestep_spacing="leading",
        )
        config = CLIPTextConfig(**text_config(tokenizer))
        StableDiffusionXLPipeline(
            vae=tiny_vae(),
            text_encoder=CLIPTextModel(config),
            text_encoder_2=CLIPTextModelWithProjection(config),
            tokenizer=tokenizer,
            tokenizer_2=tokenizer,
            unet=unet,
            scheduler=scheduler,
        ).save_pretrained(directory)
