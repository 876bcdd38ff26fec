"""``build.py --dry-run``: the size of the plan and what it will cost, without loading any model.

The estimate scales the recipe's family's counted cost (``Generator.flops``: for SD 1.5, UNet 803.3 GFLOPs per
forward at a 64x64 latent, two forwards per step with classifier-free guidance, VAE decode 2514.5 GFLOPs at 512x512;
see ``benchmarks/sd15_architecture.json`` and ``benchmarks/families.py``) by image area and steps, and prints two
GPU-time figures: the FLOP floor on an H100 (~800 TFLOP/s dense bf16) and the pace of plain diffusers (about
1 image/s on an H100 for SD 1.5 at 512x512 and 50 steps, scaled by the family's FLOPs). The plan is made without a
``datasets`` builder (whose config hashing alone takes seconds for thousands of classes), and nothing of the
generation stack (diffusers, transformers) is imported.
"""

from __future__ import annotations

import json
from pathlib import Path

from huggingface_hub import try_to_load_from_cache

from builders.expansion import planned_recipe
from builders.export import BUILD_OUTPUT
from builders.generators import family_of
from builders.generators.stable_diffusion import SD15_FLOPS
from builders.plan import Plan, batches_per_shard, content_fingerprint, guidance_counts, make_plan, prompts_with_images
from builders.recipe import Recipe
from builders.spec import BuildSpec
from builders.store import Store, output_store
from builders.store.local import OutputDir
from builders.store.prompt_lock import read_prompt_lock
from builders.store.remote_dir import is_remote
from eval.summary import display_width, pad
from synthcore.launch import local_device
from synthcore.model_refs import TINY_RANDOM, is_local_path

H100_TFLOPS = 800.0
PLAIN_DIFFUSERS_SECONDS_512_50_STEPS = 1.0


def dry_run(spec: BuildSpec) -> str:
    """What ``--dry-run`` prints: the plan's size per split and class, what ``spec``'s output already holds, and
    the GPU-time estimate. Prompt expansion's prompts come from the output's lock, or are placeholders before the
    first build (a note says so). Loads no model, writes nothing."""
    placement = spec.placement(local_device())
    recipe, note = spec.recipe, None
    if recipe.prompt_expansion:
        recipe, note = planned_recipe(recipe, read_prompt_lock(spec.output_dir))
    fingerprint = content_fingerprint(recipe, placement.device.split(":")[0], placement.dtype_name)
    # A store's finished shards count; a local directory is read unchecked (the dry run writes nothing).
    remote = is_remote(spec.output_dir)
    store = output_store(spec.output_dir, 0, BUILD_OUTPUT) if remote else OutputDir(spec.output_dir)
    plan_text = describe(recipe, make_plan(recipe, fingerprint), store)
    return "\n".join([plan_text, *([note] if note else []), *architecture_and_download(recipe)])


def architecture_and_download(recipe: Recipe) -> list[str]:
    """Whose architecture the estimate is (SD 1.x/2.x, whose UNets differ; the other families' estimates are their
    own reference architecture's, named in the compute line), and how to fetch a missing model."""
    notes = [_architecture_note(recipe)] if recipe.model.pipeline == "StableDiffusionPipeline" else []
    return notes + [line for line in (download_line(recipe), other_downloads_line(recipe)) if line]


SD15_UNET = {"block_out_channels": [320, 640, 1280, 1280], "cross_attention_dim": 768}


def _architecture_note(recipe: Recipe) -> str:
    """Whose architecture the estimate is: it is SD 1.5's; say whether the recipe's model has that UNet, read from
    its ``unet/config.json`` where that is on disk (nothing is downloaded or loaded)."""
    ref = recipe.model.id
    if ref == TINY_RANDOM:
        return (
            f"model.id {TINY_RANDOM!r} is a tiny random test pipeline: the estimate is for SD 1.5's architecture, "
            "far above what it costs"
        )
    if is_local_path(ref):
        path = Path(ref).expanduser() / "unet" / "config.json"
    else:
        cached = try_to_load_from_cache(ref, "unet/config.json", revision=recipe.model.revision)
        path = Path(cached) if isinstance(cached, str) else None
    try:
        unet = json.loads(path.read_text(encoding="utf-8")) if path else None
    except (OSError, ValueError):
        unet = None
    if unet is None:
        return f"model.id {ref!r}: its UNet config is not on disk; the estimate assumes SD 1.5's architecture"
    found = {key: unet.get(key) for key in SD15_UNET}
    if found == SD15_UNET:
        return f"model.id {ref!r} has SD 1.5's UNet architecture: the estimate is for it"
    shown = ", ".join(f"{key} {value}" for key, value in found.items())
    return f"model.id {ref!r} has another UNet ({shown}): the estimate is SD 1.5's, not its own"


def tflops_per_image(recipe: Recipe, guidance_scale: float) -> float:
    return family_of(recipe).tflops_per_image(recipe, guidance_scale)


def cost_relative_to_sd15(recipe: Recipe, guidance_scale: float) -> float:
    """The recipe's FLOPs per image at this guidance over SD 1.5's with classifier-free guidance at the same size and
    steps (the plain pace's setting): the scale of the plain pace."""
    gen = recipe.generation
    sd15 = SD15_FLOPS.tflops_per_image(gen.height, gen.width, gen.num_inference_steps, passes=2)
    return tflops_per_image(recipe, guidance_scale) / sd15


def images_by_guidance(recipe: Recipe, plan: Plan) -> dict[float, int]:
    """The plan's images per guidance value (a guidance sweep cycles values per image), from its counts."""
    by_guidance: dict[float, int] = {}
    for split, per_class in plan.counts().items():
        for class_name, count in per_class.items():
            values = recipe.guidance_scales_of(class_name)
            prompts = len(recipe.split_prompts(class_name)[split]) if len(values) > 1 else 1
            counts = guidance_counts(count, prompts, recipe.generation.images_per_prompt, len(values))
            for value, images in zip(values, counts):
                by_guidance[value] = by_guidance.get(value, 0) + images
    return by_guidance


def describe(recipe: Recipe, plan: Plan, store: Store) -> str:
    """A table of prompts and images per split and class (the prompt partition), shards already finished in
    ``store``, and the GPU-time estimate. All from the plan's counts, never its jobs: a plan of 10^8 images is
    described in seconds, unless ``store`` holds finished shards, which are recognised by key (every key hashes its
    shard's jobs: about a microsecond per planned image)."""
    done = finished_images(plan, store)
    lines = [
        f"recipe {recipe.name!r}: {plan.num_images} images, {len(plan.shards)} shards of up to "
        f"{_shard_sizes(recipe)} images, batches of {recipe.generation.batch_size}",
        _partition_line(recipe),
        "",
        *_table(recipe, plan),
    ]
    by_guidance = images_by_guidance(recipe, plan)  # the cost depends on the guidance only (one or two passes)
    if len(by_guidance) > 1:
        shown = ", ".join(f"{guidance:g}: {images}" for guidance, images in sorted(by_guidance.items()))
        lines += ["", f"images per guidance value (a guidance sweep): {shown}"]
    lines += _reference_lines(recipe)
    lines += ["", f"already finished in {store.location}: {done} images; to make: {plan.num_images - done}"]
    return "\n".join(lines + compute_lines(recipe, plan, by_guidance, done))


def _reference_lines(recipe: Recipe) -> list[str]:
    """Each guided class's reference photos (read, checked and hashed when the recipe loaded) and strength."""
    shown = [
        f"{name}: {len(spec.reference_sha256 or {})} from "
        f"{spec.reference_images if isinstance(spec.reference_images, str) else 'the listed files'}, "
        f"strength {recipe.strength_of(name):g}"
        for name, spec in recipe.classes.items()
        if spec.reference_images is not None
    ]
    return ["", f"reference photos (image-to-image, docs/guidance.md): {'; '.join(shown)}"] if shown else []


def compute_lines(recipe: Recipe, plan: Plan, by_guidance: dict[float, int], done: int) -> list[str]:
    """The FLOPs and GPU-time estimate; for a family without a counted architecture (a pipeline run by the generic
    plug-in), a line saying there is none."""
    family = family_of(recipe)
    if family.flops is None:
        return [f"compute: no estimate (no FLOPs counted for {family.label}'s architecture)"]
    total_tflops, plain_seconds = estimate(recipe, by_guidance)
    remaining = 1 - done / plan.num_images
    return [
        f"compute: {total_tflops / max(plan.num_images, 1):.1f} TFLOPs per image "
        f"({family.flops.reference} architecture), "
        f"{total_tflops / 1000:.1f} PFLOPs in all",
        f"estimated GPU time for what remains, in H100-time: floor {duration(total_tflops * remaining / H100_TFLOPS)} "
        f"(all {H100_TFLOPS:.0f} TFLOP/s used); plain diffusers pace {duration(plain_seconds * remaining)}",
    ]


def estimate(recipe: Recipe, by_guidance: dict[float, int]) -> tuple[float, float]:
    """The plan's TFLOPs, and its seconds at plain diffusers' pace on an H100, from its images per guidance value."""
    total_tflops = sum(tflops_per_image(recipe, g) * images for g, images in by_guidance.items())
    gen = recipe.generation
    plain_seconds = sum(
        images
        * PLAIN_DIFFUSERS_SECONDS_512_50_STEPS
        * (gen.height * gen.width / 512**2)
        * gen.num_inference_steps
        / 50
        * cost_relative_to_sd15(recipe, guidance)
        for guidance, images in by_guidance.items()
    )
    return total_tflops, plain_seconds


def download_line(recipe: Recipe) -> str | None:
    """Whether the generator still has to be downloaded, how to fetch it and about how much it is (a well-known
    model's size, ``builders.generators.known``); None for a local directory, ``tiny-random`` or a cached model."""
    from builders.generators.known import KNOWN_MODELS
    from synthcore.model_refs import TINY_RANDOM, is_local_path

    model = recipe.model
    if model.id == TINY_RANDOM or is_local_path(model.id):
        return None
    need = family_of(recipe).pipeline_needs(recipe)[0]  # the pipeline's own files (a modular pipeline's index)
    if need.cached():
        return None
    known = KNOWN_MODELS.get(model.id)
    size = f", about {known.gigabytes:g} GB" if known and known.gigabytes else ""
    return (
        f"model.id {model.id!r} is not downloaded yet (not in the local Hugging Face cache{size}); the build "
        f"downloads it when online, or fetch it first with\n  {need.download_command()}"
    )


def other_downloads_line(recipe: Recipe) -> str | None:
    """The other models the build loads that are not downloaded yet (the scorers', the standalone safety checker),
    each with how to fetch it; None when every one is at hand."""
    from builders.generators.sources import ships_safety_checker
    from eval.scorers import scorer_model_refs
    from synthcore.availability import HubModel, TorchvisionWeights, transformers_model
    from synthcore.model_refs import TINY_RANDOM, is_local_path

    needs = list(scorer_model_refs(recipe.scoring))
    if recipe.model.safety_checker and not ships_safety_checker(recipe.model.id, recipe.model.revision):
        needs.append(transformers_model("model.safety_checker_id", recipe.model.safety_checker_id, "", processor=False))
    missing = [
        f"{need.key} {need.ref!r} ({need.download_command()})"
        for need in needs
        if isinstance(need, HubModel) and need.ref != TINY_RANDOM and not is_local_path(need.ref) and not need.cached()
    ] + [
        f"{need.key} {need.ref!r} ({need.url})"
        for need in needs
        if isinstance(need, TorchvisionWeights) and not need.cached_file().is_file()
    ]
    return f"also not downloaded yet: {'; '.join(missing)}" if missing else None


def _shard_sizes(recipe: Recipe) -> str:
    """The images per shard the build uses: ``output.shard_size`` in whole batches, smaller in a split too small for
    ``FEWEST_SHARDS`` full shards (``batches_per_shard``): "256", or "8 (train), 16 (test)" when splits differ."""
    sizes = {split: batches_per_shard(recipe, split) * recipe.generation.batch_size for split in recipe.splits}
    if len(set(sizes.values())) == 1:
        return str(next(iter(sizes.values())))
    return ", ".join(f"{size} ({split})" for split, size in sizes.items())


def finished_images(plan: Plan, store: Store) -> int:
    """Images of the plan already in ``store``; no key is computed when it holds no finished shard."""
    if not store.has_shards():
        return 0
    return sum(shard.size for shard in plan.shards if store.done(shard))


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


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"
