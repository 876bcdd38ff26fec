"""FLOPs per image and the device's peak FLOP/s: the two numbers that give the hardware's floor for a build."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class ComponentFlops:
    """FLOPs of one image's pieces of work: a UNet forward (batch 1), a VAE decode, a text-encoder forward."""

    unet: float
    vae_decode: float
    text_encoder: float

    def per_image(self, unet_calls: int, guidance: bool) -> float:
        """With guidance every UNet call and the text encoding run twice (prompt and negative prompt)."""
        branches = 2 if guidance else 1
        return unet_calls * branches * self.unet + self.vae_decode + branches * self.text_encoder


@torch.inference_mode()
def counted_flops(pipe, height: int, width: int) -> ComponentFlops:
    """Count the FLOPs of each component of a loaded pipeline on one image (torch.utils.flop_counter)."""
    scale = pipe.vae_scale_factor
    device, dtype = pipe.unet.device, pipe.unet.dtype
    latents = torch.zeros(1, pipe.unet.config.in_channels, height // scale, width // scale, device=device, dtype=dtype)
    tokens = torch.zeros(1, pipe.tokenizer.model_max_length, dtype=torch.long, device=device)
    text = torch.zeros(
        1, pipe.tokenizer.model_max_length, pipe.unet.config.cross_attention_dim, device=device, dtype=dtype
    )

    def flops_of(fn) -> float:
        with FlopCounterMode(display=False) as counter:
            fn()
        return float(counter.get_total_flops())

    return ComponentFlops(
        unet=flops_of(lambda: pipe.unet(latents, 1, encoder_hidden_states=text)),
        vae_decode=flops_of(lambda: pipe.vae.decode(latents)),
        text_encoder=flops_of(lambda: pipe.text_encoder(tokens)),
    )


def matmul_peak_tflops(device: str, dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    """The best dense matmul rate this device reaches, in TFLOP/s: a measured stand-in for a spec-sheet peak."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b  # warm-up: library initialisation and kernel choice
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e12
