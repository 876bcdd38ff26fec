"""What the tool costs as the dataset grows to internet scale, before any GPU work: the plan, at 10^4 to 10^8 images.

    python benchmarks/scale.py                                   # 10^4 ... 10^8 images, keys up to 10^7 (~2 min)
    python benchmarks/scale.py --sizes 10000 100000 --keys-up-to 100000

``--what plan`` (the default) measures, for each size, in a fresh process (so one size's memory never counts
against the next), on a recipe of ``--classes`` classes with 80/10/10 train/val/test splits and the default batch
and shard sizes:

- plan: ``make_plan`` and every shard made (what a build holds), its time and the Python memory it allocates at
  its peak (tracemalloc, so above imports and the recipe itself; timed in a separate run, tracemalloc slows it);
- dry run: ``build.py --dry-run``'s text on an empty output directory, from the counts alone;
- keys: every shard's key, which hashes every job (what a build's resume check asks of each process): its time,
  the time per image, and the growth of the process's resident memory (the keys kept on the shards). O(images),
  so only up to ``--keys-up-to`` images; above, the column reads "-".

The last line is the headline: the plan time of the largest size measured (the goal: under 2 s at 10^7 images,
with under 50 MB).

``--what speedup`` builds a recipe of 12 batches (tiny random model, 2 classes, batches of 2, ``--size`` pixels,
``--steps`` steps) with 1, 2 and 3 CPU processes (``accelerate launch --multi_gpu --num_processes N``;
``OMP_NUM_THREADS=1`` and the launch pinned to N cores, so each process has one core, as each GPU process of a node
has its own) and prints, for each, the making seconds (``run.json``: from the end of the start barrier to the last
shard finished, models loaded on the way), the slowest process's model loading, the whole build's seconds, the
speed-up over one process, the same once loading is taken out (the division of the work alone) and the shards each
process made. N processes on fewer than N cores cannot reach N times: on a 2-core machine, 3 processes are capped
at 2x. ``--build-py PATH`` measures another checkout's ``build.py`` (main before a change, say); where its
``run.json`` has no making seconds, the build's seconds are compared::

    python benchmarks/scale.py --what speedup                           # ~3 min on a busy 2-core machine
    python benchmarks/scale.py --what speedup --build-py ../main/build.py

``--what export`` measures the export (``builders.export.export_dataset``: verification, layout, summary, pictures,
card) of a fabricated build output of each size under ``--workdir`` (made once and kept: shards written as a build
writes them, with a tiny image per row, every column filled, the quality pass and CLIP embeddings off). Each size
runs in a fresh process: the export's seconds, and its peak resident memory above the process's memory just
before it (the kernel's high-water mark, reset then). As in a build, the shards' keys are known before the export
starts (the build's resume check computed them). The goal: under a minute at 10^6 images, memory flat in N::

    python benchmarks/scale.py --what export --sizes 100000 1000000 --classes 10 --workdir /tmp/scalebench
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import multiprocessing
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from builders.dryrun import describe  # noqa: E402
from builders.plan import content_fingerprint, make_plan  # noqa: E402
from builders.recipe import GenerationSettings, OutputSettings, Recipe, parse_recipe  # noqa: E402
from builders.store.local import OutputDir  # noqa: E402

DEFAULT_SIZES = [10**4, 10**5, 10**6, 10**7, 10**8]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--what", choices=sorted(MEASURES), default="plan", help="what to measure (default plan)")
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=DEFAULT_SIZES, help="images in the whole plan (default 10^4 .. 10^8)"
    )
    parser.add_argument("--classes", type=int, default=1000, help="classes of the recipe (default 1000)")
    parser.add_argument(
        "--keys-up-to",
        type=int,
        default=10**7,
        metavar="IMAGES",
        help="compute every shard key for plans of at most this many images (default 10^7)",
    )
    parser.add_argument("--build-py", type=Path, default=ROOT / "build.py", help="the build.py to measure (speedup)")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 3], help="process counts (speedup)")
    parser.add_argument("--size", type=int, default=96, help="image height and width (speedup; default 96)")
    parser.add_argument("--steps", type=int, default=20, help="inference steps (speedup; default 20)")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "synthdata-scale",
        help="--what export: where the fabricated outputs are made and kept (default: the temp dir)",
    )
    args = parser.parse_args(argv)
    if any(size < 10 * args.classes for size in args.sizes):
        parser.error(f"--sizes: at least 10 images per class ({10 * args.classes} for {args.classes} classes)")
    return args


def scale_recipe(images: int, classes: int) -> Recipe:
    """``classes`` classes of three prompts each, ``images / classes`` images per class in 80/10/10 splits, on the
    default model (SD 1.5, its family recorded: the dry run's estimate needs no Hub)."""
    per_class = images // classes
    splits = {"train": per_class - 2 * (per_class // 10), "val": per_class // 10, "test": per_class // 10}
    names = "".join(f"  c{i}: {{variables: {{subject: [thing {i}, other {i}, more {i}]}}}}\n" for i in range(classes))
    return parse_recipe(
        "name: scale\nmodel: {pipeline: StableDiffusionPipeline}\n"
        "templates: ['a {style} of a {subject}']\nvariables: {style: [watercolor, sketch, photo]}\n"
        f"splits: {splits}\nprompt_disjoint: true\nclasses:\n{names}"
    )


@dataclass(frozen=True)
class PlanFigures:
    images: int
    shards: int
    plan_seconds: float
    plan_mb: float
    dry_run_seconds: float
    keys_seconds: float | None
    keys_mb: float | None

    def row(self) -> str:
        keys = (
            f"{self.keys_seconds:9.2f} | {1e6 * self.keys_seconds / self.images:6.2f} | {self.keys_mb:8.1f}"
            if self.keys_seconds is not None and self.keys_mb is not None
            else f"{'-':>9} | {'-':>6} | {'-':>8}"
        )
        return (
            f"{self.images:>11,} | {self.shards:>7,} | {self.plan_seconds:6.3f} | {self.plan_mb:8.1f} | "
            f"{self.dry_run_seconds:9.2f} | {keys}"
        )


PLAN_HEADER = (
    "     images |  shards | plan s | plan MiB | dry-run s |   keys s | us/img | keys MiB\n"
    "            |         |        | (traced) |           |          |        | (RSS +)"
)


def measure_plan(images: int, classes: int, with_keys: bool) -> PlanFigures:
    """One size, in the calling process (a fresh one: ``plan_figures`` runs each size in its own)."""
    recipe = scale_recipe(images, classes)
    fingerprint = content_fingerprint(recipe, "cuda", "float16")
    started = time.perf_counter()
    shards = list(make_plan(recipe, fingerprint).shards)
    plan_seconds = time.perf_counter() - started
    del shards
    tracemalloc.start()
    plan = make_plan(recipe, fingerprint)
    shards = list(plan.shards)
    plan_bytes = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    with tempfile.TemporaryDirectory() as empty:
        started = time.perf_counter()
        describe(recipe, make_plan(recipe, fingerprint), OutputDir(empty))
        dry_run_seconds = time.perf_counter() - started
    keys_seconds = keys_mb = None
    if with_keys:
        resident_before = resident_bytes()
        started = time.perf_counter()
        keys = [shard.key for shard in shards]  # kept on the shards too, as in a build
        keys_seconds = time.perf_counter() - started
        keys_mb = (resident_bytes() - resident_before) / 2**20
        assert len(set(keys)) == len(shards)
    return PlanFigures(images, len(shards), plan_seconds, plan_bytes / 2**20, dry_run_seconds, keys_seconds, keys_mb)


def resident_bytes() -> int:
    """The process's resident memory now (Linux), not its peak: the keys' growth is what they keep."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def plan_figures(args: argparse.Namespace) -> float:
    print(PLAN_HEADER, flush=True)
    figures = []
    for images in args.sizes:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as fresh:
            figures.append(fresh.submit(measure_plan, images, args.classes, images <= args.keys_up_to).result())
        print(figures[-1].row(), flush=True)
    largest = max(figures, key=lambda f: f.images)
    print(f"headline: plan seconds at {largest.images:,} images ({largest.plan_mb:.1f} MiB) {largest.plan_seconds:.3f}")
    return largest.plan_seconds


SPEEDUP_RECIPE = """
name: speedup
model: {id: tiny-random, safety_checker: false}
generation: {num_inference_steps: STEPS, height: SIZE, width: SIZE, batch_size: 2, images_per_prompt: 1}
templates: ["a {style} of a {subject}"]
variables: {style: [watercolor, sketch, photo]}
classes:
  fox: {variables: {subject: [red fox]}}
  dog: {variables: {subject: [golden retriever]}}
splits: {train: 10, test: 2}
scoring: {clip: {enabled: false}, resnet50: {enabled: false}}
"""  # 2 classes x (5 + 1) batches = 12 batches; output.shard_size is left at its default (256 images)


@dataclass(frozen=True)
class BuildFigures:
    processes: int
    making_seconds: float | None  # None where the measured build.py does not record it
    build_seconds: float
    wall_seconds: float
    shards_per_process: list[int]
    loading_seconds: float | None  # the slowest process's model loading; None where not recorded


def measure_build(build_py: Path, recipe: Path, out: Path, processes: int) -> BuildFigures:
    """One build of ``recipe`` by ``build_py`` on ``processes`` CPU processes, into the fresh directory ``out``,
    pinned to ``processes`` cores (fewer where the machine has fewer): a process's worth of the machine, as each
    GPU process of a node has its own cores. Unpinned, one process's image encoders run on the idle cores, and
    the one-process baseline gets more than one process's share."""
    launcher = [sys.executable]
    if processes > 1:
        launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "1"]
        launcher += ["--mixed_precision", "no", "--dynamo_backend", "no", "--num_processes", str(processes)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cores = sorted(os.sched_getaffinity(0))[:processes]
    started = time.perf_counter()
    subprocess.run(
        [*launcher, str(build_py), str(recipe), "--output-dir", str(out)],
        cwd=build_py.parent,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: os.sched_setaffinity(0, cores),
    )
    wall = time.perf_counter() - started
    report = json.loads((out / ".synthdata" / "run.json").read_text(encoding="utf-8"))
    loading = max(report.get("loading_seconds_per_process") or [0.0]) or None
    return BuildFigures(
        processes, report.get("making_seconds"), report["seconds"], wall, report["shards_per_process"], loading
    )


def speedup_figures(args: argparse.Namespace) -> float:
    build_py = args.build_py.resolve()
    print(f"{build_py}: {args.size}x{args.size}, {args.steps} steps, 12 batches of 2, OMP_NUM_THREADS=1", flush=True)
    print("processes | making s | loading s | build s | wall s | speed-up | after loading | shards per process")
    figures: list[BuildFigures] = []
    with tempfile.TemporaryDirectory(prefix="speedup-") as work:
        recipe = Path(work) / "speedup.yaml"
        recipe.write_text(
            SPEEDUP_RECIPE.replace("STEPS", str(args.steps)).replace("SIZE", str(args.size)), encoding="utf-8"
        )
        for processes in args.processes:
            figures.append(measure_build(build_py, recipe, Path(work) / f"out-{processes}", processes))
            print(speedup_row(figures[-1], figures[0]), flush=True)
    best = max(figures, key=lambda f: f.processes)
    gain = speedup(best, figures[0])
    print(f"headline: speed-up of {best.processes} processes over {figures[0].processes} {gain:.2f}")
    return gain


def speedup(figures: BuildFigures, base: BuildFigures) -> float:
    """Making seconds where both runs recorded them, else the builds' seconds."""
    if figures.making_seconds and base.making_seconds:
        return base.making_seconds / figures.making_seconds
    return base.build_seconds / figures.build_seconds


def speedup_after_loading(figures: BuildFigures, base: BuildFigures) -> float | None:
    """The speed-up of the making seconds once the slowest process has loaded its models: what the division of
    the work gives, apart from loading, which every process does once whatever N (where both runs recorded it)."""
    if not (figures.making_seconds and base.making_seconds and figures.loading_seconds and base.loading_seconds):
        return None
    return (base.making_seconds - base.loading_seconds) / (figures.making_seconds - figures.loading_seconds)


def speedup_row(figures: BuildFigures, base: BuildFigures) -> str:
    making = f"{figures.making_seconds:8.1f}" if figures.making_seconds is not None else f"{'-':>8}"
    loading = f"{figures.loading_seconds:9.1f}" if figures.loading_seconds is not None else f"{'-':>9}"
    after = speedup_after_loading(figures, base)
    after_text = f"{after:12.2f}x" if after is not None else f"{'-':>13}"
    return (
        f"{figures.processes:>9} | {making} | {loading} | {figures.build_seconds:7.1f} | {figures.wall_seconds:6.1f} | "
        f"{speedup(figures, base):7.2f}x | {after_text} | {figures.shards_per_process}"
    )


# -- export ------------------------------------------------------------------------------------------------------
def export_recipe(images: int, classes: int) -> Recipe:
    """The scale recipe as a build of it is exported here: tiny random scorers' columns, no quality pass (its
    own benchmark measures it), no CLIP embeddings (512 floats a row would dwarf the tiny images)."""
    text = scale_recipe(images, classes).model_dump(mode="json", exclude_defaults=True)
    text |= {"quality": {"enabled": False}, "scoring": {"clip": {"embeddings": False}}}
    return parse_recipe(json.dumps(text))


def fabricated_column(name: str, kind: pa.DataType, jobs: list, rng: np.random.Generator, image: bytes) -> pa.Array:
    """A column of ``len(jobs)`` plausible values of type ``kind`` (the image, ids, labels and prompts as a build
    writes them; scores random)."""
    n = len(jobs)
    if name in ("id", "prompt", "label", "seed"):
        return pa.array([getattr(job, name) for job in jobs], kind)
    if pa.types.is_struct(kind):  # the image
        return pa.array([{"bytes": image, "path": None}] * n, kind)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        width = kind.list_size if pa.types.is_fixed_size_list(kind) else 5
        values = fabricated_column("", kind.value_type, jobs * width, rng, image)
        if pa.types.is_fixed_size_list(kind):
            return pa.FixedSizeListArray.from_arrays(values, width, type=kind)
        return pa.ListArray.from_arrays(pa.array(np.arange(0, n * width + 1, width, dtype=np.int32)), values, type=kind)
    if pa.types.is_integer(kind):
        return pa.array(rng.integers(0, 100, n), kind)
    if pa.types.is_floating(kind):
        return pa.array(rng.random(n), kind)
    if pa.types.is_boolean(kind):
        return pa.array(rng.random(n) < 0.5, kind)
    return pa.array(["fabricated"] * n, kind)


def fabricate_output(images: int, classes: int, root: Path) -> None:
    """Every shard of the export recipe's plan under ``root``, with records, as a finished build leaves them."""
    from builders.builder import dataset_features
    from builders.export import BUILD_OUTPUT
    from builders.store.local import ShardRecord
    from synthcore.layout import ROWS_PER_ROW_GROUP
    from synthcore.outdir import atomic_write_text, claimed, file_sha256

    recipe = export_recipe(images, classes)
    fingerprint = content_fingerprint(recipe, "cpu", "float32")
    schema = dataset_features(recipe).arrow_schema
    rng = np.random.default_rng(0)
    tiles = [png_tile(rng) for _ in range(classes)]
    with claimed(root, BUILD_OUTPUT) as owned:
        store = OutputDir(owned.root)
        store.prepare(fingerprint, overwrite=False)
        for shard in make_plan(recipe, fingerprint).shards:
            jobs = shard.jobs
            columns = [fabricated_column(f.name, f.type, jobs, rng, tiles[shard.label]) for f in schema]
            path = store.shard_path(shard)
            pq.write_table(pa.Table.from_arrays(columns, schema=schema), path, row_group_size=ROWS_PER_ROW_GROUP)
            record = ShardRecord([job.id for job in jobs], [], path.stat().st_size, file_sha256(path))
            atomic_write_text(path.with_suffix(".json"), json.dumps(dataclasses.asdict(record)))
    (root / FABRICATED).write_text("done")


FABRICATED = ".fabricated"


def png_tile(rng: np.random.Generator) -> bytes:
    """An 8x8 PNG of random pixels (a class's image in the fabricated output)."""
    buffer = io.BytesIO()
    PIL.Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass(frozen=True)
class ExportFigures:
    images: int
    shards: int
    seconds: float
    peak_mb: float

    def row(self) -> str:
        return f"{self.images:>11,} | {self.shards:>7,} | {self.seconds:8.1f} | {self.peak_mb:10.1f}"


EXPORT_HEADER = "     images |  shards | export s | peak MiB +"


def measure_export(images: int, classes: int, root: Path) -> ExportFigures:
    """One export of the fabricated output at ``root``, in the calling process (a fresh one)."""
    from builders.builder import dataset_features
    from builders.export import BUILD_OUTPUT, export_dataset
    from builders.provenance import dataset_provenance
    from synthcore.outdir import claimed

    recipe = export_recipe(images, classes)
    fingerprint = content_fingerprint(recipe, "cpu", "float32")
    plan = make_plan(recipe, fingerprint)
    features, provenance = dataset_features(recipe), dataset_provenance(recipe, fingerprint)
    for shard in plan.shards:
        assert shard.key  # a build has every key already (its resume check): kept on the shards, as there
    for path in (root / name for name in BUILD_OUTPUT.outputs):  # measured: a build's first export
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    with claimed(root, BUILD_OUTPUT) as owned:
        Path("/proc/self/clear_refs").write_text("5")  # resets the peak resident memory (VmHWM) to the current
        baseline = resident_bytes()
        started = time.perf_counter()
        export_dataset(recipe, features, provenance, OutputDir(root), owned, plan)
        seconds = time.perf_counter() - started
        peak = peak_resident_bytes()
    return ExportFigures(images, len(plan.shards), seconds, (peak - baseline) / 2**20)


def peak_resident_bytes() -> int:
    """The process's peak resident memory since the last reset (Linux: VmHWM)."""
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def export_figures(args: argparse.Namespace) -> float:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # provenance asks the Hub for model commits: not here
    print(EXPORT_HEADER, flush=True)
    figures = []
    for images in args.sizes:
        root = args.workdir / f"export-{images}-{args.classes}"
        context = multiprocessing.get_context("spawn")
        if not (root / FABRICATED).exists():
            shutil.rmtree(root, ignore_errors=True)
            with ProcessPoolExecutor(1, mp_context=context) as fresh:
                fresh.submit(fabricate_output, images, args.classes, root).result()
        with ProcessPoolExecutor(1, mp_context=context) as fresh:
            figures.append(fresh.submit(measure_export, images, args.classes, root).result())
        print(figures[-1].row(), flush=True)
    largest = max(figures, key=lambda f: f.images)
    print(f"headline: export seconds at {largest.images:,} images (+{largest.peak_mb:.1f} MiB) {largest.seconds:.1f}")
    return largest.seconds


MEASURES = {"plan": plan_figures, "speedup": speedup_figures, "export": export_figures}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print(
        f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.1f}; {args.classes} classes, 80/10/10 splits, batches of "
        f"{GenerationSettings().batch_size}, shards of {OutputSettings().shard_size}"
    )
    MEASURES[args.what](args)


if __name__ == "__main__":
    main()
