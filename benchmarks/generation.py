"""Images per second of the build's generation loop against a bare diffusers pipeline, and the FLOP floor.

    python benchmarks/generation.py                                  # CPU: tiny random models
    python benchmarks/generation.py --family flux-schnell            # CPU: another family's tiny random pipeline
    python benchmarks/generation.py --sd15-architecture --compile    # GPU: SD 1.5 at full size, random weights
    python benchmarks/generation.py --model-id black-forest-labs/FLUX.1-schnell   # GPU: any model of any family

For each batch size, the same prompts, batches and seeds run three ways on one loaded pipeline:
- bare:   ``pipe(...)`` on each batch, images left on the device: generation and nothing else;
- build:  the build's own loop (``builders.distributed_build.write_shards``: the generator plug-in, scorers, copy
          to host, then
          encoding and Parquet writing in the background worker), into a scratch output directory;
- inline: the same with the worker off (``build.py --no-background-writer``), to show what the worker hides.
It prints images/s, the build/bare ratio, the fraction of the hardware floor reached (FLOPs per image over
the device's peak FLOP/s), and where the build's wall time went, stage by stage. The last line is the
headline: the worst build/bare throughput ratio over the batch sizes (the goal is >= 0.9).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from pydantic import ValidationError  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from benchmarks.flops import counted_flops, matmul_peak_tflops  # noqa: E402
from builders.builder import SyntheticImages  # noqa: E402
from builders.distributed_build import write_shards  # noqa: E402
from builders.generators import family_of, resolve_family  # noqa: E402
from builders.generators.tiny import TINY_FAMILIES, tiny_family_dir  # noqa: E402
from builders.plan import Plan, make_plan  # noqa: E402
from builders.recipe import Recipe, RecipeError  # noqa: E402
from builders.schedulers import SCHEDULER_NAMES  # noqa: E402
from builders.spec import placement_for  # noqa: E402
from builders.store.claims import Claims, lease_seconds  # noqa: E402
from builders.store.local import OutputDir  # noqa: E402
from synthcore.launch import start_state  # noqa: E402

H100_DENSE_BF16_TFLOPS = 800.0
PROMPTS = [
    "a photo of a red fox in the snow",
    "a watercolor painting of a golden retriever",
    "a pencil sketch of a cat",
    "a photo of a lighthouse at dusk",
    "an oil painting of a sailing boat",
    "a photo of a bowl of ramen",
    "a photo of a mountain lake at sunrise",
    "a close-up photo of a sunflower",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    model = parser.add_mutually_exclusive_group()
    model.add_argument(
        "--sd15-architecture",
        action="store_true",
        help="SD 1.5 at full size with random weights (built once, no download) instead of the tiny models",
    )
    model.add_argument(
        "--family",
        choices=TINY_FAMILIES,
        help="the tiny random pipeline of this family instead of the tiny Stable Diffusion one",
    )
    model.add_argument("--model-id", help="any model of a supported family: a Hub id or a local pipeline directory")
    parser.add_argument("--steps", type=int, help="denoising steps (default: the family's, 50 for SD)")
    parser.add_argument(
        "--batch-size", type=int, nargs="+", default=[1, 8], help="batch sizes to measure (default 1 8)"
    )
    parser.add_argument("--num-images", type=int, default=32, help="images per run and batch size (default 32)")
    parser.add_argument(
        "--size",
        type=int,
        help="image height and width (default: 512 with --sd15-architecture, the model's own with --model-id, else 64)",
    )
    parser.add_argument("--scheduler", default="default", help=f"'default' or one of {', '.join(SCHEDULER_NAMES)}")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"])
    parser.add_argument("--compile", action="store_true", help="torch.compile the UNet and the VAE decoder")
    parser.add_argument("--channels-last", action="store_true", help="channels-last UNet and VAE")
    parser.add_argument(
        "--no-scoring", action="store_true", help="turn the scorers off (tiny-random scorers otherwise)"
    )
    parser.add_argument(
        "--peak-tflops",
        type=float,
        help=f"the device's peak TFLOP/s (default {H100_DENSE_BF16_TFLOPS:g} on cuda, H100 dense bf16; "
        "a measured matmul rate on CPU)",
    )
    return parser.parse_args(argv)


def bench_recipe(args: argparse.Namespace, model_id: str, size: int | None) -> Recipe:
    """A one-class recipe of ``--num-images`` images, resolved against its family (steps, guidance and, with
    ``size`` None, the size are the family's); the batch size is set per run, on a copy.

    The safety checker is off (random weights would flag at random, and SD 1.5's checker is not in the
    architecture file). The scorers are the tiny random CLIP and the full-size random ResNet50: a few GFLOPs
    per image either way, against tens of TFLOPs of generation.
    """
    steps = {} if args.steps is None else {"num_inference_steps": args.steps}
    sizes = {} if size is None else {"height": size, "width": size}
    recipe = Recipe.model_validate(
        {
            "name": "generation-benchmark",
            "model": {
                "id": model_id,
                "dtype": args.dtype,
                "scheduler": args.scheduler,
                "safety_checker": False,
                "compile": args.compile,
                "channels_last": args.channels_last,
            },
            "generation": {**steps, **sizes, "images_per_prompt": 1},
            "classes": {"bench": {"prompts": PROMPTS}},
            "splits": {"train": args.num_images},
            "scoring": {
                "clip": {"enabled": not args.no_scoring, "model": "tiny-random"},
                "resnet50": {"enabled": not args.no_scoring, "weights": "tiny-random"},
            },
        }
    )
    return resolve_family(recipe, "benchmark settings")


@dataclass
class Run:
    """Seconds for one batch size: bare pipeline, build loop with and without the worker, and the build's stages."""

    batch_size: int
    images: int
    bare: float
    build: float
    inline: float
    stages: dict[str, float]

    @property
    def idle(self) -> float:
        """Wall time of the build in which the generating thread was not generating, scoring or copying."""
        return self.build - sum(self.stages.get(s, 0.0) for s in ("generate", "score", "copy to host"))


def with_batch_size(recipe: Recipe, batch_size: int) -> Recipe:
    return recipe.model_copy(update={"generation": recipe.generation.model_copy(update={"batch_size": batch_size})})


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def timed(fn, device: str) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


@torch.inference_mode()
def bare_loop(pipe, recipe: Recipe, plan: Plan) -> None:
    """Plain diffusers: one pipeline call per planned batch, the same prompts and per-image CPU generators."""
    gen, family = recipe.generation, family_of(recipe)
    for batch in (batch for shard in plan.shards for batch in shard.batches):
        pipe(
            prompt=[job.prompt for job in batch.jobs],
            **family.call_arguments(recipe, list(batch.jobs)),  # the family's own: negative prompt, T5 length
            guidance_scale=batch.guidance_scale,
            num_inference_steps=gen.num_inference_steps,
            height=gen.height,
            width=gen.width,
            generator=[torch.Generator("cpu").manual_seed(job.seed) for job in batch.jobs],
            output_type="pt",
        )


def build_loop(builder: SyntheticImages, plan: Plan, state, directory: Path, background: bool) -> None:
    """The build's own loop over the plan's shards, written into a fresh output directory."""
    store = OutputDir(directory)
    store.prepare(builder.fingerprint(), overwrite=False)
    claims = Claims(store.claim_files(state.process_index), state.process_index, lease_seconds())
    write_shards(builder, store, claims, list(plan.shards), state, background)


def measure(builder: SyntheticImages, recipe: Recipe, state, scratch: Path) -> Run:
    plan = make_plan(recipe, builder.fingerprint())
    device = builder.placement.device
    first = plan.shards[0]
    first_batch = replace(first, stop=min(first.stop, first.start + first.batch_size))
    build_loop(builder, Plan((first_batch,)), state, scratch / "warm-up", background=True)  # loads, compiles
    pipe = builder.models()[0].pipe
    bare = timed(lambda: bare_loop(pipe, recipe, plan), device)
    builder.clock.reset()
    build = timed(lambda: build_loop(builder, plan, state, scratch / "build", background=True), device)
    stages = dict(builder.clock.seconds)
    inline = timed(lambda: build_loop(builder, plan, state, scratch / "inline", background=False), device)
    return Run(recipe.generation.batch_size, plan.num_images, bare, build, inline, stages)


def image_flops(args: argparse.Namespace, builder: SyntheticImages) -> tuple[float, str]:
    """FLOPs of one image, and a line saying what they are made of: for Stable Diffusion by component (SD 1.5's
    measured ones at 512x512, else counted on this pipeline), for the other families counted on one whole
    pipeline call at batch 1 (every step, guidance pass, text encoder and the decode)."""
    recipe, pipe = builder.recipe, builder.models()[0].pipe
    gen = recipe.generation
    if not hasattr(pipe, "unet") or not hasattr(pipe, "tokenizer"):
        plan = make_plan(with_batch_size(recipe, 1), builder.fingerprint())
        batch = Plan((replace(plan.shards[0], stop=plan.shards[0].start + 1),))
        with torch.compiler.set_stance("force_eager"), FlopCounterMode(display=False) as counter:
            bare_loop(pipe, with_batch_size(recipe, 1), batch)
        total = float(counter.get_total_flops())
        return total, f"FLOPs per image: {total / 1e12:.4g} TFLOP (counted on one whole pipeline call at batch 1)"
    if args.sd15_architecture and gen.height == gen.width == 512:
        from benchmarks.sd15_random import measured_flops

        flops, source = measured_flops(), "SD 1.5 measurements (benchmarks/sd15_architecture.json)"
    else:
        with torch.compiler.set_stance("force_eager"):
            flops = counted_flops(pipe, gen.height, gen.width)
        source = "counted on this pipeline (torch.utils.flop_counter)"
    unet_calls, guidance = len(pipe.scheduler.timesteps), pipe.do_classifier_free_guidance
    branches = 2 if guidance else 1
    per_image = flops.per_image(unet_calls, guidance)
    return per_image, (
        f"FLOPs per image: {per_image / 1e12:.4g} TFLOP = {unet_calls} UNet calls x {branches} x "
        f"{flops.unet / 1e9:.4g} GFLOP + VAE decode {flops.vae_decode / 1e9:.4g} GFLOP + text {branches} x "
        f"{flops.text_encoder / 1e9:.4g} GFLOP ({source})"
    )


def peak_tflops(args: argparse.Namespace, device: str, dtype: torch.dtype) -> tuple[float, str]:
    if args.peak_tflops:
        return args.peak_tflops, "--peak-tflops"
    if device.startswith("cuda"):
        return H100_DENSE_BF16_TFLOPS, "H100 dense bf16, measured; pass --peak-tflops for another GPU"
    return matmul_peak_tflops(device, dtype), f"best {dtype} matmul measured here"


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"{device} ({torch.get_num_threads()} threads)"


def print_report(args, builder: SyntheticImages, runs: list[Run], per_image: float, flops_line: str) -> float:
    """Print the tables; return the headline (worst build/bare ratio)."""
    recipe, placement = builder.recipe, builder.placement
    peak, peak_source = peak_tflops(args, placement.device, placement.dtype)
    floor = peak * 1e12 / per_image
    gen = recipe.generation
    print(
        f"device {device_name(placement.device)}, {placement.dtype_name}, scheduler {recipe.model.scheduler}, "
        f"{gen.num_inference_steps} steps, {gen.width}x{gen.height}, compile {recipe.model.compile}, "
        f"channels_last {recipe.model.channels_last}, scoring {not args.no_scoring}, model {recipe.model.id} "
        f"({family_of(recipe).label}, guidance {gen.guidance_scale})"
    )
    print(flops_line)
    print(f"peak {peak:.4g} TFLOP/s ({peak_source}): floor {floor:.4g} images/s ({1 / floor:.4g} s per image)\n")
    print("batch | bare img/s | build img/s | inline img/s | build/bare | inline/bare | bare % floor | build % floor")
    for r in runs:
        bare, build, inline = (r.images / s for s in (r.bare, r.build, r.inline))
        print(
            f"{r.batch_size:5d} | {bare:10.3f} | {build:11.3f} | {inline:12.3f} | {build / bare:10.3f} | "
            f"{inline / bare:11.3f} | {100 * bare / floor:11.2f}% | {100 * build / floor:12.2f}%"
        )
    print("\nwhere the build's wall time went, seconds (encode and write run on the writer thread, beside generation):")
    print("batch |   wall | generate |  score | copy to host | encode |  write | idle (generating thread)")
    for r in runs:
        g = r.stages.get
        print(
            f"{r.batch_size:5d} | {r.build:6.2f} | {g('generate', 0):8.2f} | {g('score', 0):6.2f} | "
            f"{g('copy to host', 0):12.2f} | {g('encode', 0):6.2f} | {g('write', 0):6.2f} | {r.idle:6.2f}"
        )
    return min(r.bare / r.build for r in runs)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if bad := [b for b in args.batch_size if args.num_images % b]:
        raise SystemExit(
            f"--num-images {args.num_images} is not a multiple of --batch-size {bad}: every batch must have one shape"
        )
    state = start_state()
    if args.sd15_architecture:
        from benchmarks.sd15_random import sd15_random_dir

        model_id, size = str(sd15_random_dir()), args.size or 512
    elif args.model_id:
        model_id, size = args.model_id, args.size
    else:
        model_id, size = str(tiny_family_dir(args.family)) if args.family else "tiny-random", args.size or 64
    try:
        recipe = bench_recipe(args, model_id, size)
    except (ValidationError, RecipeError) as err:
        raise SystemExit(f"invalid benchmark settings: {err}") from None
    builder = SyntheticImages(recipe=recipe, placement=placement_for(recipe, state.device), name=recipe.name)
    with tempfile.TemporaryDirectory(prefix="synthdata-benchmark-") as scratch:
        runs = [
            measure(builder, with_batch_size(recipe, b), state, Path(scratch) / f"batch-{b}") for b in args.batch_size
        ]
    per_image, flops_line = image_flops(args, builder)
    ratio = print_report(args, builder, runs, per_image, flops_line)
    print(f"\nheadline: build/bare throughput ratio (worst batch size) {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
