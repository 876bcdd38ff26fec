"""``build.py --dry-run``: the size of the plan and what it will cost, without loading any model.

The estimate scales the recipe's family's counted cost (``Generator.flops``: for SD 1.5, UNet 803.3 GFLOPs per
forward at a 64x64 latent, two forwards per step with classifier-free guidance, VAE decode 2514.5 GFLOPs at 512x512;
see ``benchmarks/sd15_architecture.json`` and ``benchmarks/families.py``) by image area and steps, and prints two
GPU-time figures: the FLOP floor on an H100 (~800 TFLOP/s dense bf16) and the pace of plain diffusers (about
1 image/s on an H100 for SD 1.5 at 512x512 and 50 steps, scaled by the family's FLOPs).
"""

from __future__ import annotations

from builders.generators import family_of
from builders.generators.stable_diffusion import SD15_FLOPS
from builders.plan import Plan, prompts_with_images
from builders.recipe import Recipe
from builders.store import OutputDir
from eval.summary import display_width, pad

H100_TFLOPS = 800.0
PLAIN_DIFFUSERS_SECONDS_512_50_STEPS = 1.0


def tflops_per_image(recipe: Recipe, guidance_scale: float) -> float:
    return family_of(recipe).tflops_per_image(recipe, guidance_scale)


def cost_relative_to_sd15(recipe: Recipe) -> float:
    """The recipe's FLOPs per image over SD 1.5's with classifier-free guidance at the same size and steps (the
    plain pace's setting): the scale of the plain pace."""
    gen = recipe.generation
    sd15 = SD15_FLOPS.tflops_per_image(gen.height, gen.width, gen.num_inference_steps, passes=2)
    return tflops_per_image(recipe, gen.guidance_scale) / sd15


def describe(recipe: Recipe, plan: Plan, store: OutputDir) -> str:
    """A table of prompts and images per split and class (the prompt partition), shards already finished in
    ``store``, and the GPU-time estimate. All from the plan's counts, never its jobs: a plan of 10^8 images is
    described in seconds, unless ``store`` holds finished shards, which are recognised by key (every key hashes its
    shard's jobs: about a microsecond per planned image)."""
    done = finished_images(plan, store)
    lines = [
        f"recipe {recipe.name!r}: {plan.num_images} images, {len(plan.shards)} shards of up to "
        f"{recipe.output.shard_size}, batches of {recipe.generation.batch_size}",
        _partition_line(recipe),
        "",
        *_table(recipe, plan),
    ]
    images_by_guidance: dict[float, int] = {}  # the cost depends on the guidance only (one or two passes)
    for per_class in plan.counts().values():
        for class_name, count in per_class.items():
            guidance = recipe.guidance_scale_of(class_name)
            images_by_guidance[guidance] = images_by_guidance.get(guidance, 0) + count
    total_tflops = sum(tflops_per_image(recipe, g) * images for g, images in images_by_guidance.items())
    remaining = 1 - done / plan.num_images
    gen = recipe.generation
    plain_seconds = (
        plan.num_images
        * PLAIN_DIFFUSERS_SECONDS_512_50_STEPS
        * (gen.height * gen.width / 512**2)
        * gen.num_inference_steps
        / 50
        * cost_relative_to_sd15(recipe)
    )
    lines += [
        "",
        f"already finished in {store.location}: {done} images; to make: {plan.num_images - done}",
        f"compute: {total_tflops / max(plan.num_images, 1):.1f} TFLOPs per image "
        f"({family_of(recipe).flops.reference} architecture), "
        f"{total_tflops / 1000:.1f} PFLOPs in all",
        f"estimated GPU time for what remains, in H100-time: floor {_duration(total_tflops * remaining / H100_TFLOPS)} "
        f"(all {H100_TFLOPS:.0f} TFLOP/s used); plain diffusers pace {_duration(plain_seconds * remaining)}",
    ]
    return "\n".join(lines)


def finished_images(plan: Plan, store: OutputDir) -> int:
    """Images of the plan already in ``store``; no key is computed when it holds no finished shard."""
    if not store.has_shards():
        return 0
    return sum(shard.size for shard in plan.shards if store.is_done(shard))


def _partition_line(recipe: Recipe) -> str:
    if not recipe.prompt_disjoint:
        return "prompts: every split draws on all of its class's prompts"
    shares = ", ".join(f"{split} {share:.3g}" for split, share in recipe.prompt_shares().items())
    return f"prompts: prompt-disjoint splits, each class's prompts partitioned in shares {shares}"


def _table(recipe: Recipe, plan: Plan) -> list[str]:
    """Per split and class: the prompts its images use ("3 of 5" where the split holds more than its count
    needs) and the images."""
    by_class = {name: recipe.split_prompts(name) for name in recipe.class_names}
    rows = [("split", "class", "prompts", "images")]
    for split, per_class in plan.counts().items():
        for class_name, count in per_class.items():
            held = by_class[class_name][split]
            used = len(prompts_with_images(recipe, split, held))
            rows.append((split, class_name, str(used) if used == len(held) else f"{used} of {len(held)}", str(count)))
    widths = [max(least, 2 + max(display_width(row[i]) for row in rows)) for i, least in enumerate((12, 24, 10, 8))]
    return ["".join(pad(cell, w, left=i < 2) for i, (cell, w) in enumerate(zip(row, widths))).rstrip() for row in rows]


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"
