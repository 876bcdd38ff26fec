"""The measuring half of ``python -m benchmarks.gpu``: full-size random pipelines built on the device, the plan with
each step's estimated time, and per batch size the bare and build runs (imported once the packages are checked)."""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from benchmarks.families import (
    architectures,
    denoiser_forward,
    estimate_memory,
    text_encoder_forward,
    vae_decode_forward,
)
from benchmarks.flops import matmul_peak_tflops
from benchmarks.generation import bare_loop, bench_recipe, build_loop, synchronize, timed, with_batch_size
from builders.builder import SyntheticImages
from builders.generators import FAMILIES
from builders.generators.tiny import tiny_family_dir
from builders.plan import make_plan
from builders.spec import placement_for
from synthcore.launch import start_state

# Assumed for the plan's estimates only (the run measures): the fraction of the FLOP floor plain diffusers reaches
# (about 1 image/s of SD 1.5 on an H100 at batch 1 is ~10%; bigger batches do better), the seconds one
# torch.compile of a denoiser and a VAE decoder takes per batch shape, and the disk rate of saving and loading weights.
ASSUMED_FLOOR_FRACTION = 0.2
ASSUMED_COMPILE_SECONDS = 90.0
ASSUMED_BYTES_PER_SECOND = 1.0e9
# The 2026 families: each is one Step in benchmarks/gpu.py once its plug-in (builders/generators/) and its
# families_architecture.json entry exist; until then the run reports it as not measured.
WANTED_FAMILIES = ("z-image", "flux2-klein", "flux3", "qwen-image-2.1", "krea2")
TEXT_ENCODER_NAMES = ("text_encoder", "text_encoder_2", "text_encoder_3")


@dataclass
class Result:
    """One step at one batch size: an entry of the JSON's ``runs``."""

    name: str
    family: str
    steps: int
    batch_size: int
    dtype: str
    compile: bool
    size: int
    images: int
    images_per_s: float
    bare_images_per_s: float
    build_over_bare_time: float
    floor_fraction: float
    bare_floor_fraction: float
    tflops_per_image: float
    warm_up_seconds: float
    compile_seconds: float | None
    load_seconds: float
    peak_memory_bytes: int | None
    bare_peak_memory_bytes: int | None
    estimated_memory_gib: float | None


def images_per_run(batch_size: int) -> int:
    """Images timed per run: whole batches, at least 4 images (one batch of 8 or 16 is seconds on a GPU)."""
    return batch_size * max(1, 4 // batch_size)


def plugin(step):
    return next(f for f in FAMILIES if f.name == step.family)


def tflops_per_image(step) -> float:
    """The dry run's FLOPs per image of the step's full-size family (its counted cost scaled by area and steps)."""
    family = plugin(step)
    guidance = family.default_guidance if step.guidance is None else step.guidance
    return family.flops.tflops_per_image(step.size, step.size, step.steps, family.passes(guidance))


def estimated_seconds(step, peak_tflops: float) -> float:
    """Warm-up batch plus bare and build runs at each batch size at the assumed fraction of the floor, plus
    building, saving and loading the weights, plus the compiles."""
    images = sum(b + 2 * images_per_run(b) for b in step.batch_sizes)
    compute = images * tflops_per_image(step) / (peak_tflops * ASSUMED_FLOOR_FRACTION)
    weights = architectures()[step.family]["estimated_memory_gib"]["1"]["weights"] * 2**30
    # torch.compile's automatic dynamic shapes: the second batch size recompiles with a dynamic batch, the rest reuse it
    compiles = ASSUMED_COMPILE_SECONDS * min(len(step.batch_sizes), 2) if step.compile else 0.0
    return compute + 3 * weights / ASSUMED_BYTES_PER_SECOND + compiles


def run_all(steps: list, smoke: bool, budget_seconds: float, command: str, save: Callable[[dict], None]) -> dict:
    """Print the plan, then run each step with what of it still fits the budget (re-checked against the clock
    before each); ``save`` gets the report after every step, so a run cut short keeps what it measured."""
    start = time.perf_counter()
    state = start_state()
    device = str(state.device)
    peak = matmul_peak_tflops(device, torch.bfloat16, size=8192 if device.startswith("cuda") else 256)
    print_plan(steps, peak, smoke, budget_seconds - (time.perf_counter() - start))
    report = {
        "date": datetime.date.today().isoformat(),
        "command": command,
        "smoke": smoke,
        "device": device_info(device, peak),
        "budget_seconds": budget_seconds,
        "wall_seconds": 0.0,
        "runs": [],
        "skipped": [{"name": f, "reason": "no benchmark step yet"} for f in missing_2026_families(steps)],
    }
    with tempfile.TemporaryDirectory(prefix="synthdata-gpu-benchmark-") as scratch:
        for planned in steps:
            left = budget_seconds - (time.perf_counter() - start)
            step = planned if smoke else fitting(planned, left, peak)
            if step != planned:
                reason = f"estimated {estimated_seconds(planned, peak):.0f} s, {max(left, 0):.0f} s of the budget left"
                skip(report, planned, step.batch_sizes if step else (), reason)
            if step:
                run_step(report, step, smoke, state, (Path(scratch), peak))
            report["wall_seconds"] = time.perf_counter() - start
            save(report)
    return report


def skip(report: dict, step, kept: tuple[int, ...], reason: str) -> None:
    name = f"{step.name} batch {'/'.join(str(b) for b in step.batch_sizes if b not in kept)}"
    print(f"skipping {name}: {reason}", flush=True)
    report["skipped"].append({"name": name, "reason": reason})


def run_step(report: dict, step, smoke: bool, state, where: tuple[Path, float]) -> None:
    """Measure one step into the report. A step that fails (out of memory, a kernel missing) is reported as skipped
    with its error and the run goes on: the GPU time is too short to lose the other steps' figures to one."""
    try:
        report["runs"] += [asdict(r) for r in measure_step(step, smoke, state, *where)]
    except Exception as error:  # noqa: BLE001 - any failure of one step: reported, the others still measured
        skip(report, step, (), f"failed: {type(error).__name__}: {error}")
        release(str(state.device))


def fitting(step, seconds: float, peak: float):
    """The step with as many of its batch sizes (smallest first) as its estimate fits in ``seconds``; None if none."""
    for count in range(len(step.batch_sizes), 0, -1):
        cut = replace(step, batch_sizes=step.batch_sizes[:count])
        if estimated_seconds(cut, peak) <= seconds:
            return cut
    return None


def missing_2026_families(steps: list) -> list[str]:
    """The 2026 families none of ``steps`` measures (no step written for them yet, or left out by --only)."""
    return [name for name in WANTED_FAMILIES if name not in {step.family for step in steps}]


def print_plan(steps: list, peak: float, smoke: bool, budget: float) -> None:
    """Each step with its FLOPs per image and estimated time, and what the budget leaves out if the estimates hold."""
    print(
        f"plan ({'--smoke: tiny pipelines, no estimates, no budget' if smoke else f'budget {budget:.0f} s'}; "
        f"measured matmul peak {peak:.4g} TFLOP/s; estimates at {ASSUMED_FLOOR_FRACTION:.0%} of the floor):"
    )
    for step in steps:
        estimate = estimated_seconds(step, peak)
        fits = step if smoke else fitting(step, budget, peak)
        budget -= estimated_seconds(fits, peak) if fits else 0.0
        kept = "/".join(map(str, fits.batch_sizes)) if fits else "none"
        print(
            f"  {step.name:<18} {step.family:<17} {step.size}px {step.steps} steps {step.dtype} "
            f"batch {'/'.join(map(str, step.batch_sizes))} compile {step.compile}: "
            f"{tflops_per_image(step):.4g} TFLOP/image (full size)"
            + ("" if smoke else f", ~{estimate:.0f} s")
            + ("" if fits == step else f"; over the budget: batch {kept} unless earlier steps run faster")
        )
    for name in missing_2026_families(steps):
        print(f"  {name:<18} not measured: no benchmark step yet (or not among --only)")
    print(flush=True)


def device_info(device: str, peak_tflops: float) -> dict:
    import diffusers

    cuda = device.startswith("cuda")
    return {
        "name": torch.cuda.get_device_name(device) if cuda else f"CPU ({platform.machine()})",
        "type": "cuda" if cuda else "cpu",
        "memory_bytes": torch.cuda.get_device_properties(device).total_memory if cuda else None,
        "peak_tflops": peak_tflops,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "cuda": torch.version.cuda,
    }


def model_id(step, smoke: bool, device: str, scratch: Path) -> str:
    """The pipeline a step runs: the tiny random one with --smoke, else its full-size random one."""
    if smoke:
        return step.tiny if step.tiny == "tiny-random" else str(tiny_family_dir(step.tiny))
    if step.family == "stable-diffusion":
        from benchmarks.sd15_random import sd15_random_dir

        return str(sd15_random_dir())
    directory = scratch / f"model-{step.family}-{step.tiny}-{step.dtype}-{step.size}"
    if not directory.exists():  # steps of one model share it (SDXL-Turbo's 1 and 4 steps); one at a time on disk
        for built in scratch.glob("model-*"):
            shutil.rmtree(built)
        full_size_dir(step, device, directory)
    return str(directory)


def full_size_dir(step, device: str, directory: Path) -> None:
    """The step's tiny pipeline directory (scheduler, tokenizers) with every model replaced by its full-size
    architecture (families_architecture.json) with random weights, made on the device in the run dtype (random
    init of 12B parameters on a CPU takes many minutes) and saved one at a time."""
    family, dtype = architectures()[step.family], getattr(torch, step.dtype)
    shutil.copytree(tiny_family_dir(step.tiny), directory)
    index = json.loads((directory / "model_index.json").read_text(encoding="utf-8"))
    denoiser = {**family["denoiser"], "config": {**family["denoiser"]["config"], **step.overrides}}
    builders = {
        "transformer" if "transformer" in index else "unet": lambda: denoiser_forward(denoiser, step.size, dtype=dtype)[
            0
        ],
        "vae": lambda: vae_decode_forward(family["vae"], denoiser["latent_channels"], 1, dtype=dtype)[0],
    }
    for name, spec in zip(TEXT_ENCODER_NAMES, family["text_encoders"]):
        builders[name] = lambda spec=spec: text_encoder_forward(spec, dtype=dtype)[0]
    default = torch.get_default_dtype()
    try:
        torch.set_default_dtype(dtype)
        for name, build in builders.items():
            with torch.device(device):
                model = build()
            shutil.rmtree(directory / name)
            model.save_pretrained(directory / name)
            del model
    finally:
        torch.set_default_dtype(default)


def memory_peak(device: str) -> int | None:
    return torch.cuda.max_memory_allocated(device) if device.startswith("cuda") else None


def reset_memory_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)


def estimated_gib(step, batch: int, smoke: bool) -> float | None:
    """The meta-device estimate of the GPU memory of the step's full-size family at its size and batch."""
    if smoke:
        return None
    family = architectures()[step.family]
    denoiser = {**family["denoiser"], "config": {**family["denoiser"]["config"], **step.overrides}}
    sized = {**family, "size": step.size, "denoiser": denoiser}
    guidance = plugin(step).default_guidance if step.guidance is None else step.guidance
    return estimate_memory(sized, batch, getattr(torch, step.dtype), plugin(step).passes(guidance))["total"]


def step_recipe(step, model: str, batch: int):
    """The benchmark recipe (benchmarks/generation.py's) of one step at one batch size: ``images_per_run`` images."""
    settings = argparse.Namespace(
        steps=step.steps,
        dtype=step.dtype,
        scheduler=step.scheduler,
        compile=step.compile,
        channels_last=False,
        no_scoring=False,
        num_images=images_per_run(batch),
    )
    recipe = with_batch_size(bench_recipe(settings, model, step.size), batch)
    if step.guidance is None:
        return recipe
    return recipe.model_copy(
        update={"generation": recipe.generation.model_copy(update={"guidance_scale": step.guidance})}
    )


def measure_step(step, smoke: bool, state, scratch: Path, peak: float) -> list[Result]:
    """Build (or find) the step's pipeline, load it once, and measure each batch size; free the device after."""
    device = str(state.device)
    print(f"{step.name}: building the pipeline", flush=True)
    model = model_id(step, smoke, device, scratch)
    first = step_recipe(step, model, step.batch_sizes[0])
    builder = SyntheticImages(recipe=first, placement=placement_for(first, state.device), name=first.name)
    load = timed(builder.models, device)
    results = []
    for batch in step.batch_sizes:
        recipe = step_recipe(step, model, batch)
        results.append(measure_batch(step, builder, recipe, state, scratch, (peak, load, smoke)))
        print_result(results[-1])
    del builder
    release(device)
    return results


def release(device: str) -> None:
    """Free what the last step held on the device: compiled graphs hold the models, the allocator its cache."""
    torch._dynamo.reset()
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def measure_batch(step, builder, recipe, state, scratch: Path, context: tuple[float, float, bool]) -> Result:
    """A warm-up batch through the build (kernels chosen, compiled), then bare diffusers and the build on the same
    batches and seeds, each with the device's memory peak reset before it. ``context``: the device's peak TFLOP/s,
    the pipeline's load seconds, and whether this is a smoke run."""
    (peak, load, smoke), device, batch = context, str(state.device), recipe.generation.batch_size
    runs = scratch / f"{step.name}-batch-{batch}"
    plan = make_plan(recipe, builder.fingerprint())
    warm = replace(plan.shards[0], stop=plan.shards[0].start + batch)
    warm_up = timed(lambda: build_loop(builder, type(plan)((warm,)), state, runs / "warm-up", True), device)
    reset_memory_peak(device)
    bare = timed(lambda: bare_loop(builder.models()[0].pipe, recipe, plan), device)
    bare_peak = memory_peak(device)
    reset_memory_peak(device)
    build = timed(lambda: build_loop(builder, plan, state, runs / "build", True), device)
    synchronize(device)
    images, tflops = plan.num_images, tflops_per_image(step)
    floor = peak / tflops  # images/s at the device's peak
    return Result(
        name=step.name,
        family=step.family,
        steps=step.steps,
        batch_size=batch,
        dtype=step.dtype,
        compile=step.compile,
        size=step.size,
        images=images,
        images_per_s=images / build,
        bare_images_per_s=images / bare,
        build_over_bare_time=build / bare,
        floor_fraction=images / build / floor,
        bare_floor_fraction=images / bare / floor,
        tflops_per_image=tflops,
        warm_up_seconds=warm_up,
        compile_seconds=max(warm_up - build * batch / images, 0.0) if step.compile else None,
        load_seconds=load,
        peak_memory_bytes=memory_peak(device),
        bare_peak_memory_bytes=bare_peak,
        estimated_memory_gib=estimated_gib(step, batch, smoke),
    )


def print_result(run: Result) -> None:
    peak = "-" if run.peak_memory_bytes is None else f"{run.peak_memory_bytes / 2**30:.2f} GiB"
    estimate = "-" if run.estimated_memory_gib is None else f"{run.estimated_memory_gib:.1f} GiB"
    compiled = "" if run.compile_seconds is None else f", compile {run.compile_seconds:.1f} s"
    print(
        f"  batch {run.batch_size:>2}: build {run.images_per_s:.3f} img/s, bare {run.bare_images_per_s:.3f} img/s, "
        f"build/bare time {run.build_over_bare_time:.3f}, {run.floor_fraction:.1%} of the floor, "
        f"peak memory {peak} (estimate {estimate}), warm-up {run.warm_up_seconds:.1f} s{compiled}",
        flush=True,
    )
