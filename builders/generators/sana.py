"""Sana (``SanaPipeline``): a linear-attention DiT on a 32x deep-compression autoencoder (DC-AE), with a Gemma 2
text encoder that reads the prompt after the model's own instruction preamble; flow matching, classifier-free
guidance. Resolution binning and caption cleaning are off, as for PixArt-Σ. Its pipeline ships no safety checker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from builders.generators.base import DiffusersGenerator, FamilyFlops
from builders.plan import Job
from builders.recipe import Recipe
from synthcore.tiny import byte_fallback_unigram


class Sana(DiffusersGenerator):
    name = "sana"
    tiny_names = ("sana",)  # its tiny random pipelines (write_tiny), for tests and benchmarks
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

    def write_tiny(self, directory: Path, name: str) -> None:
        """Sana: a linear-attention DiT on a deep-compression autoencoder (DC-AE), with a Gemma 2 text encoder."""
        from diffusers import FlowMatchEulerDiscreteScheduler, SanaPipeline, SanaTransformer2DModel
        from transformers import Gemma2Config, Gemma2Model, GemmaTokenizerFast

        backend = byte_fallback_unigram(["<pad>", "<eos>", "<bos>", "<unk>"])
        tokenizer = GemmaTokenizerFast(tokenizer_object=backend, model_max_length=8192)
        text_dim = 16
        transformer = SanaTransformer2DModel(
            patch_size=1,
            in_channels=4,
            out_channels=4,
            num_layers=1,
            num_attention_heads=2,
            attention_head_dim=4,
            num_cross_attention_heads=2,
            cross_attention_head_dim=4,
            cross_attention_dim=8,
            caption_channels=text_dim,
            sample_size=16,
        )
        vae = _tiny_dc_ae()
        text_encoder = Gemma2Model(
            Gemma2Config(
                head_dim=8,
                hidden_size=text_dim,
                intermediate_size=32,
                num_attention_heads=2,
                num_hidden_layers=1,
                num_key_value_heads=2,
                vocab_size=len(tokenizer),
                pad_token_id=tokenizer.pad_token_id,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                attn_implementation="eager",
            )
        )
        SanaPipeline(
            tokenizer=tokenizer,
            text_encoder=text_encoder,
            vae=vae,
            transformer=transformer,
            scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        ).save_pretrained(directory)


def _tiny_dc_ae():
    """A two-block deep-compression autoencoder with one linear-attention block, as diffusers' Sana tests build it."""
    from diffusers import AutoencoderDC

    return AutoencoderDC(
        in_channels=3,
        latent_channels=4,
        attention_head_dim=2,
        encoder_block_types=("ResBlock", "EfficientViTBlock"),
        decoder_block_types=("ResBlock", "EfficientViTBlock"),
        encoder_block_out_channels=(8, 8),
        decoder_block_out_channels=(8, 8),
        encoder_qkv_multiscales=((), (5,)),
        decoder_qkv_multiscales=((), (5,)),
        encoder_layers_per_block=(1, 1),
        decoder_layers_per_block=(1, 1),
        downsample_block_type="conv",
        upsample_block_type="interpolate",
        decoder_norm_types="rms_norm",
        decoder_act_fns="silu",
        scaling_factor=0.41407,
    )
