"""Stable Diffusion 1.5 at full size with random weights, built from its published component configs.

The benchmarks need the real model's shapes (its FLOPs, memory traffic and kernels) but cannot download its
weights, so the UNet, VAE and text encoder are built from ``sd15_architecture.json`` (a copy of SD 1.5's
config.json values and the FLOPs measured on them, ``measured_flops``) and saved once as a diffusers pipeline
directory, which a recipe then names as its ``model.id``. The tokenizer is the tiny models' byte-level CLIP
tokenizer (77 tokens, ids below 514); the text encoder keeps the real vocabulary size (49408), so its FLOPs and
size are the real ones.
Images from random weights are noise: only the timings mean something.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from benchmarks.flops import ComponentFlops
from synthcore.tiny import built_once, byte_level_clip_tokenizer, cache_root

ARCHITECTURE_FILE = Path(__file__).with_name("sd15_architecture.json")
VERSION = "v1"


def architecture() -> dict:
    return json.loads(ARCHITECTURE_FILE.read_text(encoding="utf-8"))


def measured_flops() -> ComponentFlops:
    """SD 1.5's FLOPs at 512x512 as measured on its configs with torch.utils.flop_counter (from the json)."""
    flops = architecture()["measured_flops"]
    return ComponentFlops(
        unet=flops["unet_forward"], vae_decode=flops["vae_decode"], text_encoder=flops["text_encoder"]
    )


def sd15_random_dir() -> Path:
    """A diffusers pipeline directory with SD 1.5's architecture and random weights, built on first use."""
    return built_once(cache_root() / f"sd15-architecture-random-{VERSION}", _write_pipeline) / "sd"


def _write_pipeline(directory: Path) -> None:
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    arch = architecture()
    torch.manual_seed(0)
    tokenizer = byte_level_clip_tokenizer(directory / "vocab")
    text_config = CLIPTextConfig(
        **arch["text_encoder"],
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    scheduler_config = {k: v for k, v in arch["scheduler"].items() if k != "_class_name"}
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL(**arch["vae"]),
        text_encoder=CLIPTextModel(text_config),
        tokenizer=tokenizer,
        unet=UNet2DConditionModel(**arch["unet"]),
        scheduler=PNDMScheduler(**scheduler_config),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.to(torch.float16).save_pretrained(directory / "sd")  # half the disk; loading casts to the recipe's dtype
    shutil.rmtree(directory / "vocab")
