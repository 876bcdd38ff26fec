"""How many classes can CLIP score? Class texts embed in chunks of ``TEXT_CHUNK``; this finds the largest class
count whose class embeddings and one batch of scores fit on this machine, growing the count tenfold.

``--model vit-b32-random`` is CLIP ViT-B/32's architecture (transformers' ``CLIPConfig()`` defaults: 12-layer
512-wide text encoder, 77 tokens, 512-d projection; 224-pixel ViT-B/32) with random weights and the tiny models'
byte-level tokenizer, so its memory and time are the real model's; ``tiny-random`` is quick. ``--text-chunk 0``
embeds every class text in one batch (the behaviour before chunking) for comparison.

    python -m benchmarks.clip_classes --model vit-b32-random --max-classes 100000
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import torch

import eval.scorers.clip as clip_module
from eval.scorers.clip import Clip, LoadedClip
from synthcore.tiny import built_once, byte_level_clip_tokenizer, cache_root

TEMPLATES = ["a photo of a {label}"]


def vit_b32_random_dir() -> Path:
    """A CLIP directory with ViT-B/32's architecture and random weights, built once."""
    return built_once(cache_root() / "clip-vit-b32-random-v1", _write_vit_b32) / "clip"


def _write_vit_b32(directory: Path) -> None:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    torch.manual_seed(0)
    tokenizer = byte_level_clip_tokenizer(directory / "vocab")
    config = CLIPConfig(
        text_config={"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id},
    )
    CLIPModel(config).save_pretrained(directory / "clip")
    CLIPProcessor(image_processor=CLIPImageProcessor(), tokenizer=tokenizer).save_pretrained(directory / "clip")


def peak_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def score_classes(clip: Clip, classes: int, images: int) -> tuple[float, float]:
    """Seconds to embed ``classes`` class texts, and to score ``images`` images against them."""
    started = time.perf_counter()
    loaded = LoadedClip(clip, [f"class number {i}" for i in range(classes)], TEMPLATES, embeddings=False)
    embedded = time.perf_counter()
    pixels = torch.rand(images, 3, 256, 320, device=clip.device)
    labels = torch.arange(images, device=clip.device) % classes
    loaded.score(pixels, labels, [f"prompt {i}" for i in range(images)])
    return embedded - started, time.perf_counter() - embedded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny-random", help="tiny-random, vit-b32-random, or a CLIP directory")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--start", type=int, default=1000, help="first class count (then x10)")
    parser.add_argument("--max-classes", type=int, default=1_000_000)
    parser.add_argument("--images", type=int, default=16, help="images scored against the classes")
    parser.add_argument("--text-chunk", type=int, default=clip_module.TEXT_CHUNK, help="0: one batch")
    args = parser.parse_args()
    clip_module.TEXT_CHUNK = args.text_chunk or args.max_classes * len(TEMPLATES)
    model = str(vit_b32_random_dir()) if args.model == "vit-b32-random" else args.model
    clip = Clip(model, args.device)
    print(
        f"{args.model} on {args.device}, text chunk {clip_module.TEXT_CHUNK}, torch threads {torch.get_num_threads()}"
    )
    largest, classes = 0, args.start
    while classes <= args.max_classes:
        try:
            embed_s, score_s = score_classes(clip, classes, args.images)
        except (torch.OutOfMemoryError, MemoryError, RuntimeError) as err:
            print(f"{classes:>9,} classes: failed ({type(err).__name__}: {str(err).splitlines()[0][:120]})")
            break
        largest = classes
        print(f"{classes:>9,} classes: embed {embed_s:7.1f} s, score {args.images} images {score_s:5.2f} s, "
              f"peak {peak_mib(clip.device):8.0f} MiB")  # fmt: skip
        classes *= 10
    print(f"largest class count scored: {largest:,} (tried up to {args.max_classes:,})")


if __name__ == "__main__":
    main()
