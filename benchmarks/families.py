"""FLOPs per image of every generator family, counted on its reference architecture with random weights.

``python -m benchmarks.families [FAMILY ...]`` builds each family's denoiser, VAE and text encoders from
``families_architecture.json`` on PyTorch's meta device (shapes only: a 12B-parameter transformer costs no memory and
a few seconds), runs one forward of each at the family's reference size under ``torch.utils.flop_counter``, and
prints the GFLOPs that go into the family's ``FamilyFlops`` (``builders/generators/``), which ``--dry-run`` scales
by image area and steps. ``--write`` stores them in the json as ``measured_gflops``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ARCHITECTURES = Path(__file__).with_name("families_architecture.json")


def architectures() -> dict:
    return {k: v for k, v in json.loads(ARCHITECTURES.read_text(encoding="utf-8")).items() if not k.startswith("_")}


def _gflops(run) -> float:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        run()
    return counter.get_total_flops() / 1e9


def _config_class(name: str) -> str:
    return {"CLIPTextModel": "CLIPTextConfig", "CLIPTextModelWithProjection": "CLIPTextConfig"}.get(
        name, name.replace("EncoderModel", "Config").replace("Model", "Config")
    )


def text_encoder_gflops(spec: dict) -> float:
    import transformers

    config = getattr(transformers, _config_class(spec["class"]))(**spec["config"])
    model = getattr(transformers, spec["class"])(config)
    tokens = torch.zeros(1, spec["tokens"], dtype=torch.long)
    return _gflops(lambda: model(input_ids=tokens))


def denoiser_gflops(spec: dict, size: int) -> float:
    """One forward at batch 1 (one pass of one step)."""
    import diffusers

    config, latent = spec["config"], size // spec["vae_scale"]
    model = getattr(diffusers, spec["class"])(**config)
    x = torch.zeros(1, spec["latent_channels"], latent, latent)
    t = torch.ones(1)
    text = torch.zeros(1, spec["text_tokens"], config.get("joint_attention_dim") or config.get("caption_channels") or 0)
    name = spec["class"]
    if name == "UNet2DConditionModel":
        text = torch.zeros(1, spec["text_tokens"], config["cross_attention_dim"])
        added = (
            {"text_embeds": torch.zeros(1, spec["pooled_dim"]), "time_ids": torch.zeros(1, 6)}
            if config.get("addition_embed_type")
            else None
        )
        return _gflops(lambda: model(x, t, encoder_hidden_states=text, added_cond_kwargs=added))
    if name == "SD3Transformer2DModel":
        pooled = torch.zeros(1, spec["pooled_dim"])
        return _gflops(
            lambda: model(hidden_states=x, encoder_hidden_states=text, pooled_projections=pooled, timestep=t)
        )
    if name == "FluxTransformer2DModel":
        packed = (latent // 2) ** 2
        return _gflops(
            lambda: model(
                hidden_states=torch.zeros(1, packed, config["in_channels"]),
                encoder_hidden_states=text,
                pooled_projections=torch.zeros(1, spec["pooled_dim"]),
                timestep=t,
                img_ids=torch.zeros(packed, 3),
                txt_ids=torch.zeros(spec["text_tokens"], 3),
                guidance=t if config.get("guidance_embeds") else None,
            )
        )
    if name == "PixArtTransformer2DModel":
        added = {"resolution": None, "aspect_ratio": None}
        return _gflops(lambda: model(x, encoder_hidden_states=text, timestep=t, added_cond_kwargs=added))
    if name == "SanaTransformer2DModel":
        return _gflops(lambda: model(x, encoder_hidden_states=text, timestep=t))
    raise ValueError(f"no forward for {name}")


def vae_decode_gflops(spec: dict, latent_channels: int, latent: int) -> float:
    import diffusers

    vae = getattr(diffusers, spec["class"])(**spec["config"])
    return _gflops(lambda: vae.decode(torch.zeros(1, latent_channels, latent, latent)))


def count(family: dict) -> dict[str, float]:
    """GFLOPs of one denoiser forward, one VAE decode and all text encoders, at the family's reference size."""
    size, denoiser = family["size"], family["denoiser"]
    with torch.device("meta"):
        return {
            "denoiser": round(denoiser_gflops(denoiser, size), 1),
            "vae_decode": round(
                vae_decode_gflops(family["vae"], denoiser["latent_channels"], size // denoiser["vae_scale"]), 1
            ),
            "text_encoders": round(sum(text_encoder_gflops(spec) for spec in family["text_encoders"]), 1),
        }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("families", nargs="*", help="family names (default: all)")
    parser.add_argument("--write", action="store_true", help="store the counts in the json as measured_gflops")
    args = parser.parse_args(argv)
    data = json.loads(ARCHITECTURES.read_text(encoding="utf-8"))
    for name in args.families or list(architectures()):
        counted = count(data[name])
        print(f"{name:<18} {data[name]['size']}px  " + "  ".join(f"{k} {v:.1f} GFLOPs" for k, v in counted.items()))
        data[name]["measured_gflops"] = counted
    if args.write:
        ARCHITECTURES.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
