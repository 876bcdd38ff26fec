"""Stable Diffusion 3 and 3.5 (``StableDiffusion3Pipeline``): an MMDiT transformer trained with flow matching, two
CLIP text encoders and a T5-XXL encoder, classifier-free guidance. Its pipeline ships no safety checker."""

from __future__ import annotations

from pathlib import Path

from builders.generators.base import DiffusersGenerator, FamilyFlops
from synthcore.tiny import T5_DIM, TEXT_DIM, clip_tokenizer, t5_encoder, t5_tokenizer, text_config, tiny_vae


class StableDiffusion3(DiffusersGenerator):
    name = "sd3"
    tiny_names = ("sd3",)  # its tiny random pipelines (write_tiny), for tests and benchmarks
    label = "Stable Diffusion 3.x"
    pipeline_classes = ("StableDiffusion3Pipeline",)
    image_to_image = "StableDiffusion3Img2ImgPipeline"
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

    def write_tiny(self, directory: Path, name: str) -> None:
        """SD3: an MMDiT transformer, two CLIP text encoders with projections and a T5 encoder."""
        from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
        from transformers import CLIPTextConfig, CLIPTextModelWithProjection

        tokenizer = clip_tokenizer(directory)
        t5 = t5_tokenizer()
        transformer = SD3Transformer2DModel(
            sample_size=16,
            patch_size=1,
            in_channels=4,
            num_layers=1,
            attention_head_dim=8,
            num_attention_heads=4,
            caption_projection_dim=32,
            joint_attention_dim=T5_DIM,
            pooled_projection_dim=2 * TEXT_DIM,
            out_channels=4,
        )
        config = CLIPTextConfig(**text_config(tokenizer))
        StableDiffusion3Pipeline(
            transformer=transformer,
            scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),  # SD3's own
            vae=tiny_vae(use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035),
            text_encoder=CLIPTextModelWithProjection(config),
            tokenizer=tokenizer,
            text_encoder_2=CLIPTextModelWithProjection(config),
            tokenizer_2=tokenizer,
            text_encoder_3=t5_encoder(t5),
            tokenizer_3=t5,
        ).save_pretrained(directory)
