"""Krea 2 (``Krea2Pipeline``, Krea): a 12.9B single-stream DiT over 2x2-packed latents of the Qwen-Image VAE, fed
twelve hidden layers of a Qwen3-VL text encoder (fused inside the transformer); flow matching. Its guidance follows
Krea's convention: ``cond + guidance_scale * (cond - uncond)``, on whenever ``guidance_scale`` is above 0 (two
passes a step). The base model runs 28 steps at guidance 4.5; Turbo (``is_distilled`` in its ``model_index.json``)
8 steps without guidance. Licence: the Krea 2 community licence (``krea-2-community``, https://www.krea.ai/krea-2-licensing),
not an open-source one: read its terms before commercial use. Its pipeline ships no safety checker.
"""

from __future__ import annotations

from pathlib import Path

from builders.generators.base import FamilyDefaults, FamilyFlops
from builders.generators.generic import SignatureGenerator
from synthcore.tiny import qwen_tokenizer


class Krea2(SignatureGenerator):
    name = "krea2"
    tiny_names = ("krea2",)  # its tiny random pipelines (write_tiny), for tests and benchmarks
    label = "Krea 2"
    pipeline_classes = ("Krea2Pipeline",)
    example = "CalamitousFelicitousness/Krea-2-Turbo-Diffusers"
    card_tags = ("krea2",)
    max_sequence_length = 512
    cfg_above = 0.0
    default_steps, default_guidance, default_sequence_length = 28, 4.5, 512  # diffusers' Krea 2 page (base)
    distilled = FamilyDefaults(1024, 1024, 8, 0.0, 512)  # the Turbo card: 8 steps, guidance 0
    # GFLOPs counted by benchmarks/families.py on the reference architecture (families_architecture.json).
    flops = FamilyFlops(size=1024, denoiser=128987.2, vae_decode=11682.6, text_encoders=4103.9, reference=example)

    def write_tiny(self, directory: Path, name: str) -> None:
        """Krea 2 base: two DiT blocks of width 32 with the text-fusion stage over three layers of a two-layer
        Qwen3-VL text encoder, the Qwen-Image VAE at toy size; as diffusers' tests build it (the models are made in
        that order, so the seeded weights stay the same)."""
        from diffusers import Krea2Pipeline

        tokenizer = qwen_tokenizer()
        transformer, vae, text_encoder = tiny_transformer(), tiny_vae(), tiny_text_encoder(tokenizer)
        Krea2Pipeline(
            scheduler=tiny_scheduler(),
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            transformer=transformer,
            text_encoder_select_layers=(0, 1, 2),
        ).save_pretrained(directory)


def tiny_scheduler():
    """Flow matching with Krea 2's resolution-dependent shift (the modular Turbo blocks fix it: ``mu`` 1.15)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(
        use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256, max_image_seq_len=6400
    )


def tiny_transformer(num_text_layers: int = 3):
    """One DiT block of width 32 fusing ``num_text_layers`` text layers (the classic pipeline's three; the modular
    blocks stack Krea 2's twelve), with one layerwise and one refiner text block."""
    from diffusers import Krea2Transformer2DModel

    return Krea2Transformer2DModel(
        in_channels=16,
        num_layers=1,
        attention_head_dim=8,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=32,
        timestep_embed_dim=8,
        text_hidden_dim=16,
        num_text_layers=num_text_layers,
        text_num_attention_heads=2,
        text_num_key_value_heads=1,
        text_intermediate_size=16,
        num_layerwise_text_blocks=1,
        num_refiner_text_blocks=1,
        axes_dims_rope=(4, 2, 2),
        rope_theta=1000.0,
    )


def tiny_vae():
    """The Qwen-Image VAE at toy size (4 latent channels, three levels)."""
    from diffusers import AutoencoderKLQwenImage

    return AutoencoderKLQwenImage(
        base_dim=24,
        z_dim=4,
        dim_mult=[1, 2, 4],
        num_res_blocks=1,
        temperal_downsample=[False, True],
        latents_mean=[0.0] * 4,
        latents_std=[1.0] * 4,
    )


def tiny_text_encoder(tokenizer, num_hidden_layers: int = 2):
    """A Qwen3-VL of width 16 and ``num_hidden_layers`` layers (a one-block vision tower it never uses) over
    ``tokenizer``'s vocabulary: two for the classic pipeline, which picks its layers from its config; 35 for the
    modular blocks, which stack Krea 2's fixed hidden states 2, 5, ..., 35."""
    from transformers import Qwen3VLConfig, Qwen3VLModel

    text = {
        "hidden_size": 16,
        "intermediate_size": 16,
        "num_hidden_layers": num_hidden_layers,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "head_dim": 8,
        "vocab_size": len(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
    }
    vision = {"depth": 1, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": 16}
    return Qwen3VLModel(Qwen3VLConfig(text_config=text, vision_config=vision, vocab_size=len(tokenizer))).eval()
