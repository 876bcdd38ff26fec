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
import weakref
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map
from torch.utils.flop_counter import FlopCounterMode

ARCHITECTURES = Path(__file__).with_name("families_architecture.json")


def architectures() -> dict:
    return {k: v for k, v in json.loads(ARCHITECTURES.read_text(encoding="utf-8")).items() if not k.startswith("_")}


def _gflops(run) -> float:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        run()
    return counter.get_total_flops() / 1e9


def _config_class(name: str) -> str:
    return {
        "CLIPTextModel": "CLIPTextConfig",
        "CLIPTextModelWithProjection": "CLIPTextConfig",
        "Qwen3ForCausalLM": "Qwen3Config",
        "Qwen3VLForConditionalGeneration": "Qwen3VLConfig",
    }.get(name, name.replace("EncoderModel", "Config").replace("Model", "Config"))


# A component built from its config, and one forward of it on zeros (its inputs made when called).
Forward = tuple[torch.nn.Module, Callable[[], Any]]


def text_encoder_forward(spec: dict, batch: int = 1, dtype: torch.dtype = torch.float32) -> Forward:
    import transformers

    config = getattr(transformers, _config_class(spec["class"]))(**spec["config"])
    model = getattr(transformers, spec["class"])(config).to(dtype)
    return model, lambda: model(input_ids=torch.zeros(batch, spec["tokens"], dtype=torch.long))


def text_encoder_gflops(spec: dict) -> float:
    return _gflops(text_encoder_forward(spec)[1])


def denoiser_forward(spec: dict, size: int, batch: int = 1, dtype: torch.dtype = torch.float32) -> Forward:
    """One forward of ``batch`` latents (one pass of one step)."""
    import diffusers

    config, latent, name = spec["config"], size // spec["vae_scale"], spec["class"]
    model = getattr(diffusers, name)(**config).to(dtype)

    def zeros(*shape: int) -> torch.Tensor:
        return torch.zeros(*shape, dtype=dtype)

    text_dim = (
        config.get("joint_attention_dim")
        or config.get("caption_channels")
        or config.get("cross_attention_dim")
        or config.get("cap_feat_dim")
        or config.get("text_hidden_dim")
        or config.get("context_in_dim")
    )

    def run():
        x, t, text = zeros(batch, spec["latent_channels"], latent, latent), torch.ones(batch), None
        text = zeros(batch, spec["text_tokens"], text_dim)
        if name == "UNet2DConditionModel":
            added = (
                {"text_embeds": zeros(batch, spec["pooled_dim"]), "time_ids": zeros(batch, 6)}
                if config.get("addition_embed_type")
                else None
            )
            return model(x, t, encoder_hidden_states=text, added_cond_kwargs=added)
        if name == "SD3Transformer2DModel":
            pooled = zeros(batch, spec["pooled_dim"])
            return model(hidden_states=x, encoder_hidden_states=text, pooled_projections=pooled, timestep=t)
        if name == "FluxTransformer2DModel":
            packed = (latent // 2) ** 2
            return model(
                hidden_states=zeros(batch, packed, config["in_channels"]),
                encoder_hidden_states=text,
                pooled_projections=zeros(batch, spec["pooled_dim"]),
                timestep=t,
                img_ids=torch.zeros(packed, 3),
                txt_ids=torch.zeros(spec["text_tokens"], 3),
                guidance=t if config.get("guidance_embeds") else None,
            )
        if name == "Flux3Transformer2DModel":
            packed = (latent // 2) ** 2
            return model(
                hidden_states=zeros(batch, packed, config["in_channels"]),
                encoder_hidden_states=text,
                timestep=t,
                img_ids=torch.zeros(packed, 4),
                txt_ids=torch.zeros(spec["text_tokens"], 4),
                target_timestep=t if config.get("flow_map") else None,
            )
        if name == "PixArtTransformer2DModel":
            added = {"resolution": None, "aspect_ratio": None}
            return model(x, encoder_hidden_states=text, timestep=t, added_cond_kwargs=added)
        if name == "SanaTransformer2DModel":
            return model(x, encoder_hidden_states=text, timestep=t)
        if name == "Flux2Transformer2DModel":  # 2x2-patchified latents as tokens, 4-axis positions
            tokens = (latent // 2) ** 2
            return model(
                hidden_states=zeros(batch, tokens, config["in_channels"]),
                encoder_hidden_states=text,
                timestep=t,
                img_ids=torch.zeros(batch, tokens, 4),
                txt_ids=torch.zeros(batch, spec["text_tokens"], 4),
            )
        if name == "Krea2Transformer2DModel":  # 2x2-packed latents; text as (tokens, tapped layers, width)
            tokens, text_tokens = (latent // 2) ** 2, spec["text_tokens"]
            layers = zeros(batch, text_tokens, config["num_text_layers"], config["text_hidden_dim"])
            return model(
                hidden_states=zeros(batch, tokens, config["in_channels"]),
                encoder_hidden_states=layers,
                timestep=t,
                position_ids=torch.zeros(text_tokens + tokens, 3),
                encoder_attention_mask=torch.ones(batch, text_tokens, dtype=torch.bool),
            )
        if name == "QwenImage21Transformer2DModel":  # unpatched latents; an image slot per 2x2 of them
            tokens, text_tokens = latent**2, spec["text_tokens"]
            slots = torch.ones(batch, text_tokens + tokens // 4, dtype=torch.bool)
            slots[:, :text_tokens] = False  # text, then the target image's slots
            img_shapes = [[(1, latent, latent)]] * batch
            return model(
                hidden_states=zeros(batch, tokens, config["in_channels"]),
                encoder_hidden_states=text,
                timestep=t,
                img_shapes=img_shapes,
                img_mask=slots,
            )
        if name == "ZImageTransformer2DModel":  # lists of per-image latents (C, frames, H, W) and prompt tokens
            return model(list(x.unsqueeze(2).unbind(0)), t, list(text.unbind(0)), return_dict=False)
        raise ValueError(f"no forward for {name}")

    return model, run


def denoiser_gflops(spec: dict, size: int) -> float:
    """One forward at batch 1 (one pass of one step)."""
    with traced(spec):
        return _gflops(denoiser_forward(spec, size)[1])


class ShapesOnly(TorchDispatchMode):
    """Runs on the CPU what a forward reads the values of (integer and boolean tensors: masks, positions, the
    factories that make them) and only the shapes of the floating-point work: an op with a floating-point input is
    run on the meta device and its output allocated empty, unless its output's shape depends on values the meta
    device does not have (boolean indexing, ``repeat_interleave``), which then runs for real. A forward that reads
    its masks' values (Qwen-Image 2.1's) is so traced at full size in the time of its bookkeeping."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not any(isinstance(t, torch.Tensor) and t.is_floating_point() for t in tree_flatten((args, kwargs))[0]):
            return func(*args, **kwargs)
        try:
            out = func(*tree_map(_to_meta, args), **tree_map(_to_meta, kwargs))
        except (NotImplementedError, RuntimeError):  # a data-dependent output shape
            return func(*args, **kwargs)
        if func._schema.is_mutable:  # an in-place op: its tensor stays the same object
            return args[0]
        return tree_map(lambda t: torch.empty_like(t, device="cpu") if isinstance(t, torch.Tensor) else t, out)


def _to_meta(value):
    return value.to("meta") if isinstance(value, torch.Tensor) and not value.is_meta else value


@contextmanager
def traced(spec: dict):
    """Where a model of ``spec`` is built and run to count it: on the meta device, or where its forward reads its
    masks' values (``"reads_values"``: Qwen-Image 2.1) with ``ShapesOnly`` and its weights on the meta device, its
    attention as plain matrix products (counted, as on the meta device)."""
    if not spec.get("reads_values"):
        with torch.device("meta"):
            yield
        return
    from accelerate import init_empty_weights
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with torch.device("cpu"), init_empty_weights(include_buffers=False), sdpa_kernel(SDPBackend.MATH), ShapesOnly():
        yield


def vae_decode_forward(
    spec: dict, latent_channels: int, latent: int, batch: int = 1, dtype: torch.dtype = torch.float32
) -> Forward:
    import diffusers

    vae = getattr(diffusers, spec["class"])(**spec["config"]).to(dtype)
    frames = (1,) if spec["class"].startswith("AutoencoderKLQwenImage") else ()  # a video VAE: one frame
    return vae, lambda: vae.decode(torch.zeros(batch, latent_channels, *frames, latent, latent, dtype=dtype))


def vae_decode_gflops(spec: dict, latent_channels: int, latent: int) -> float:
    return _gflops(vae_decode_forward(spec, latent_channels, latent)[1])


class LiveBytes(TorchDispatchMode):
    """The bytes of tensor storage alive at once, and their peak, over the ops run under it: every op's output
    storage counts from its creation until the last tensor on it is freed (CPython frees at once). On the meta
    device this traces a real forward's allocations without allocating anything. Tensors made before the mode
    (the weights) are not counted."""

    def __init__(self):
        super().__init__()
        self.tensors: dict[int, int] = {}  # storage -> tensors alive on it
        self.sizes: dict[int, int] = {}
        self.live = self.peak = 0

    def _release(self, storage: int) -> None:
        self.tensors[storage] -= 1
        if not self.tensors[storage]:
            del self.tensors[storage]
            self.live -= self.sizes.pop(storage)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor):
                storage = tensor.untyped_storage()._cdata
                if storage not in self.tensors:
                    self.tensors[storage], self.sizes[storage] = 0, tensor.untyped_storage().nbytes()
                    self.live += self.sizes[storage]
                    self.peak = max(self.peak, self.live)
                self.tensors[storage] += 1
                weakref.finalize(tensor, self._release, storage)
        return out


def _fused_attention(query, key, value, *args, **kwargs) -> torch.Tensor:
    """What a fused attention kernel (flash or memory-efficient SDPA, as on a GPU) allocates: its output only,
    never the scores of every query against every key that the meta device's reference implementation builds."""
    return query.new_empty((*query.shape[:-1], value.shape[-1]))


def peak_bytes(run: Callable[[], Any]) -> int:
    """Peak bytes allocated by ``run`` beyond the weights (fused attention, no autograd), where the caller traces
    (``traced``: the meta device)."""
    plain = torch.nn.functional.scaled_dot_product_attention
    torch.nn.functional.scaled_dot_product_attention = _fused_attention
    try:
        with torch.no_grad(), LiveBytes() as live:
            run()
    finally:
        torch.nn.functional.scaled_dot_product_attention = plain
    return live.peak


def weight_bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))


def estimate_memory(family: dict, batch: int, dtype: torch.dtype, passes: int) -> dict[str, float]:
    """GiB a GPU holds at the peak of making ``batch`` images at the family's reference size, everything on the
    GPU (no CPU offload, no VAE slicing): all the weights, plus the largest of the three stages' own
    allocations: the text encoders (one prompt batch at a time), one denoiser forward on ``batch`` x ``passes``
    latents (two with classifier-free guidance), the VAE decode of ``batch`` latents (in ``decode_dtype``, where
    the pipeline upcasts its VAE)."""
    size, denoiser = family["size"], family["denoiser"]
    decode_dtype = getattr(torch, family.get("decode_dtype", str(dtype).removeprefix("torch.")))
    latent = size // denoiser["vae_scale"]
    with torch.device("meta"):
        texts = [text_encoder_forward(spec, batch, dtype) for spec in family["text_encoders"]]
        stages = {"text encoders": max(peak_bytes(run) for _, run in texts)}
        vae, decode = vae_decode_forward(family["vae"], denoiser["latent_channels"], latent, batch, decode_dtype)
        stages["vae decode"] = peak_bytes(decode)
    with traced(denoiser):
        model, run = denoiser_forward(denoiser, size, batch * passes, dtype)
        stages["denoiser"] = peak_bytes(run)
    weights = sum(weight_bytes(m) for m in (model, vae, *(m for m, _ in texts)))
    stage = max(stages, key=stages.get)
    gib = 2**30
    return {
        "weights": round(weights / gib, 1),
        "peak_stage": stage,
        "peak_stage_gib": round(stages[stage] / gib, 1),
        "total": round((weights + stages[stage]) / gib, 1),
    }


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


def memory_estimates(name: str, family: dict, batches: list[int]) -> dict[str, dict]:
    """``estimate_memory`` at each batch size, in the family's GPU dtype (``model.dtype: auto``) at its default
    guidance, printed as it goes."""
    from builders.generators import FAMILIES

    plugin = next(f for f in FAMILIES if f.name == name)
    dtype, passes = getattr(torch, plugin.gpu_dtype), plugin.passes(getattr(plugin, "default_guidance", 0.0))
    estimates = {}
    for batch in batches:
        estimates[str(batch)] = found = estimate_memory(family, batch, dtype, passes)
        print(
            f"{name:<18} {family['size']}px {plugin.gpu_dtype} batch {batch}: {found['total']:.1f} GiB = weights "
            f"{found['weights']:.1f} + {found['peak_stage']} {found['peak_stage_gib']:.1f} (estimate)",
            flush=True,
        )
    return estimates


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("families", nargs="*", help="family names (default: all)")
    parser.add_argument(
        "--memory",
        type=int,
        nargs="+",
        metavar="BATCH",
        help="estimate GPU memory at these batch sizes (meta-device tracing) instead of counting FLOPs",
    )
    parser.add_argument(
        "--write",
        action="store_true",
        help="store the counts in the json as measured_gflops (with --memory: the estimates as estimated_memory_gib)",
    )
    args = parser.parse_args(argv)
    data = json.loads(ARCHITECTURES.read_text(encoding="utf-8"))
    for name in args.families or list(architectures()):
        if args.memory:
            data[name]["estimated_memory_gib"] = memory_estimates(name, data[name], args.memory)
            continue
        counted = count(data[name])
        print(f"{name:<18} {data[name]['size']}px  " + "  ".join(f"{k} {v:.1f} GFLOPs" for k, v in counted.items()))
        data[name]["measured_gflops"] = counted
    if args.write:
        ARCHITECTURES.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
