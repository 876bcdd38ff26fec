"""Every GPU figure in one prepared command: ``python -m benchmarks.gpu --output gpu.json``.

On one CUDA device, with no network, in one process and within a wall-time budget (8 minutes by default), it
builds full-size random-weight pipelines from the architecture files the project ships (SD 1.5 from
``sd15_architecture.json``, the other families from ``families_architecture.json``, built on the device in the run
dtype) and, for each planned step and batch size, runs the same prompts, batches and seeds twice on one loaded
pipeline: plain diffusers (``bare``) and the build's own loop (generator, CLIP and ResNet50 scorers, copy to host,
encoding and Parquet writing: ``build``). It prints its plan first, with each step's time estimated from the dry
run's FLOPs per image and the GPU's measured matmul peak, and skips (saying so) what would not fit the budget.

It reports images/s of both, their ratio (the goal: build within 1.10x of bare), the fraction of the FLOP floor,
peak GPU memory next to the meta-device estimate, and the compile time apart; ``--output`` writes them as one JSON
and a dated section is appended to ``benchmarks/RESULTS.md`` (``--results``, ``--no-results``).
``--smoke`` runs every step on the tiny random pipelines on the CPU (a check of the script, not a measurement).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

BUDGET_MINUTES = 8.0
RESULTS_FILE = Path(__file__).with_name("RESULTS.md")
# pip name -> import name of what the run needs (checked first, so a bare device image fails with one clear line).
REQUIRED_PACKAGES = {
    "torch": "torch",
    "torchvision": "torchvision",
    "diffusers": "diffusers",
    "transformers": "transformers",
    "accelerate": "accelerate",
    "datasets": "datasets",
    "dill": "dill",
    "multiprocess": "multiprocess",
    "pyarrow": "pyarrow",
    "safetensors": "safetensors",
    "pillow": "PIL",
    "pydantic": "pydantic",
    "pydantic-core": "pydantic_core",
    "annotated-types": "annotated_types",
    "typing-inspection": "typing_inspection",
    "importlib-metadata": "importlib_metadata",
    "pyyaml": "yaml",
    "filelock": "filelock",
    "tqdm": "tqdm",
    "psutil": "psutil",
    "peft": "peft",
}


@dataclass(frozen=True)
class Step:
    """One pipeline at one setting, measured at each of its batch sizes."""

    name: str
    family: str  # the key in families_architecture.json
    tiny: str  # the tiny random pipeline that stands in for it with --smoke ("tiny-random": SD 1.5's)
    steps: int
    size: int
    dtype: str
    batch_sizes: tuple[int, ...]
    compile: bool = False
    scheduler: str = "default"
    guidance: float | None = None  # None: the family's default
    overrides: dict = field(default_factory=dict)  # changes to the denoiser's config (e.g. FLUX.1-schnell's)


# In order of what matters most: each step runs if it still fits the budget, with as many of its batch sizes as fit.
STEPS = (
    Step("sd15", "stable-diffusion", "tiny-random", 50, 512, "float16", (1, 8, 16)),
    Step("sdxl-turbo-1step", "sdxl", "sdxl", 1, 512, "float16", (1, 8), scheduler="euler_a", guidance=0.0),
    Step("sdxl-turbo-4step", "sdxl", "sdxl", 4, 512, "float16", (1, 8), scheduler="euler_a", guidance=0.0),
    Step(
        "flux-schnell",
        "flux",
        "flux-schnell",
        4,
        1024,
        "bfloat16",
        (1, 8),
        guidance=0.0,
        overrides={"guidance_embeds": False},
    ),
    Step("z-image-turbo", "z-image", "z-image", 9, 1024, "bfloat16", (1, 4), guidance=0.0),
    Step("qwen-image-2.1-turbo", "qwen-image-2.1", "qwen-image-2.1", 8, 1024, "bfloat16", (1, 4), guidance=1.0),
    Step("sd15-compile", "stable-diffusion", "tiny-random", 50, 512, "float16", (1, 8, 16), compile=True),
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="every step on the tiny random pipelines, on the CPU")
    parser.add_argument(
        "--only", nargs="+", metavar="STEP", help=f"these steps only: {', '.join(s.name for s in STEPS)}"
    )
    parser.add_argument("--batch-size", type=int, nargs="+", help="these batch sizes instead of each step's own")
    parser.add_argument("--budget-minutes", type=float, default=BUDGET_MINUTES, help="wall-time budget (default 8)")
    parser.add_argument("--output", type=Path, help="write the figures to this JSON file")
    parser.add_argument("--results", type=Path, default=RESULTS_FILE, help="RESULTS.md to append a dated section to")
    parser.add_argument("--no-results", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args(argv)
    known = {s.name for s in STEPS}
    if bad := [name for name in args.only or () if name not in known]:
        parser.error(f"--only: no step {', '.join(bad)}; known: {', '.join(sorted(known))}")
    return args


def missing_packages() -> list[str]:
    return [pip for pip, module in REQUIRED_PACKAGES.items() if importlib.util.find_spec(module) is None]


def chosen_steps(args: argparse.Namespace) -> list[Step]:
    """The steps to run; with --smoke each shrunk to the tiny pipelines' size, 2 steps, float32, batch 1 and 2
    (compiled: batch 1 only, as each batch shape is a compile of minutes on a CPU)."""
    steps = [s for s in STEPS if not args.only or s.name in args.only]
    if args.smoke:
        steps = [
            replace(s, steps=min(s.steps, 2), size=32, dtype="float32", batch_sizes=(1,) if s.compile else (1, 2))
            for s in steps
        ]
    if args.batch_size:
        steps = [replace(s, batch_sizes=tuple(args.batch_size)) for s in steps]
    return steps


def images_per_run(batch_size: int) -> int:
    """Images timed per run: whole batches, at least 4 images (one batch of 8 or 16 is seconds on a GPU)."""
    return batch_size * max(1, 4 // batch_size)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if missing := missing_packages():
        print(
            f"benchmarks.gpu: missing Python packages: {', '.join(missing)}; install them (on a machine without "
            "network, carry their wheels: see docs/speed.md)",
            file=sys.stderr,
        )
        return 2
    import torch

    if not args.smoke and not torch.cuda.is_available():
        print("benchmarks.gpu: no CUDA device here; --smoke runs the tiny pipelines on the CPU", file=sys.stderr)
        return 2
    from benchmarks.gpu_run import run_all  # the heavy imports, once they are known to be there

    report = run_all(
        chosen_steps(args),
        args.smoke,
        args.budget_minutes * 60,
        " ".join(["python -m benchmarks.gpu", *(argv if argv is not None else sys.argv[1:])]),
        save=lambda report: write_json(args.output, report),
    )
    if args.output:
        print(f"wrote {args.output}")
    if not args.no_results:
        append_results(args.results, report)
        print(f"appended a section to {args.results}")
    return 0


def write_json(path: Path | None, report: dict) -> None:
    """The report so far, replaced whole (written beside, then renamed: a reader never sees half a file)."""
    if path is not None:
        partial = path.with_name(path.name + ".partial")
        partial.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        partial.replace(path)


def append_results(path: Path, report: dict) -> None:
    """A dated section with the device's name: the command, then one table row per run and the skipped steps."""
    device = report["device"]
    lines = [
        "",
        f"## GPU benchmark, {report['date']}, {device['name']}"
        + (" (--smoke: tiny models, not a measurement)" if report["smoke"] else ""),
        "",
        f"`{report['command']}` (torch {device['torch']}, diffusers {device['diffusers']}; measured peak "
        f"{device['peak_tflops']:.4g} TFLOP/s bf16 matmul; {report['wall_seconds']:.0f} s wall)",
        "",
        "| run | batch | steps | size | dtype | compile | build img/s | bare img/s | build/bare time | % floor (build) "
        "| peak GiB (build) | estimate GiB | compile s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in report["runs"]:
        lines.append(
            f"| {run['name']} | {run['batch_size']} | {run['steps']} | {run['size']} | {run['dtype']} | "
            f"{run['compile']} | {run['images_per_s']:.3f} | {run['bare_images_per_s']:.3f} | "
            f"{run['build_over_bare_time']:.3f} | {100 * run['floor_fraction']:.1f}% | "
            f"{_gib(run['peak_memory_bytes'])} | {_or_dash(run['estimated_memory_gib'])} | "
            f"{_or_dash(run['compile_seconds'])} |"
        )
    lines += [f"- skipped {s['name']}: {s['reason']}" for s in report["skipped"]]
    with path.open("a", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")


def _gib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**30:.2f}"


def _or_dash(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


if __name__ == "__main__":
    sys.exit(main())
