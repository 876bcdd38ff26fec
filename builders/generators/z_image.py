"""Z-Image (``ZImagePipeline``, Tongyi-MAI, Apache-2.0): a 6B single-stream DiT (S3-DiT) on FLUX.1's 16-channel VAE,
reading the prompt with a Qwen3 text encoder after a chat template; flow matching. Its classifier-free guidance runs
whenever ``guidance_scale`` is above 0 (two passes a step). Z-Image-Turbo is distilled to 8 denoiser passes (9
steps, the last one free) without guidance; its configs are Z-Image's own, so nothing read before the weights tells
it apart: a model whose id names "turbo" gets the Turbo defaults, any other the base model's. Its pipeline ships no
safety checker.
"""

from __future__ import annotations

from pathlib import Path

from builders.generators.base import FamilyDefaults, FamilyFlops
from builders.generators.generic import SignatureGenerator
from builders.generators.sources import ModelFiles
from synthcore.tiny import qwen3_config, qwen_tokenizer, tiny_vae

TURBO = FamilyDefaults(1024, 1024, 9, 0.0, 512)  # the Z-Image-Turbo card: 9 steps (8 passes), guidance 0
BASE = FamilyDefaults(1024, 1024, 50, 4.0, 512)  # the Z-Image card: 28 to 50 steps, guidance 3 to 5


def is_turbo(files: ModelFiles) -> bool:
    return "turbo" in files.model_id.lower()


class ZImage(SignatureGenerator):
    name = "z-image"
    tiny_names = ("z-image",)  # its tiny random pipelines (write_tiny), for tests and benchmarks
    label = "Z-Image"
    pipeline_classes = ("ZImagePipeline",)
    image_to_image = "ZImageImg2ImgPipeline"
    example = "Tongyi-MAI/Z-Image-Turbo"
    card_tags = ("z-image",)
    max_sequence_length = 512
    cfg_above = 0.0
    default_steps, default_guidance, default_sequence_length = BASE.num_inference_steps, BASE.guidance_scale, 512
    # GFLOPs counted by benchmarks/families.py on the reference architecture (families_architecture.json).
    flops = FamilyFlops(size=1024, denoiser=55605.9, vae_decode=10472.2, text_encoders=3875.1, reference=example)

    def defaults(self, files: ModelFiles) -> FamilyDefaults:
        return TURBO if is_turbo(files) else BASE

    def write_tiny(self, directory: Path, name: str) -> None:
        """Z-Image: a single-stream DiT with noise and caption refiners, a Qwen3 text encoder (its second-to-last
        hidden states), FLUX.1's VAE layout; as diffusers' tests build it."""
        import torch
        from diffusers import FlowMatchEulerDiscreteScheduler, ZImagePipeline, ZImageTransformer2DModel
        from transformers import Qwen3Model

        tokenizer = qwen_tokenizer()
        transformer = ZImageTransformer2DModel(
            all_patch_size=(2,),
            all_f_patch_size=(1,),
            in_channels=4,
            dim=32,
            n_layers=1,
            n_refiner_layers=1,
            n_heads=2,
            n_kv_heads=2,
            qk_norm=True,
            cap_feat_dim=16,
            rope_theta=256.0,
            axes_dims=[8, 4, 4],
            axes_lens=[256, 32, 32],
        )
        with torch.no_grad():  # left uninitialised (torch.empty) by the model; diffusers' tests fix them too
            transformer.x_pad_token.fill_(1.0)
            transformer.cap_pad_token.fill_(1.0)
        text_encoder = Qwen3Model(qwen3_config(tokenizer, 16, 2))
        ZImagePipeline(
            scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
            vae=tiny_vae(4, scaling_factor=0.3611, shift_factor=0.1159),
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            transformer=transformer,
        ).save_pretrained(directory)
