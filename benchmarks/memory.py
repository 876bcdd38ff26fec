"""Peak memory of a build as the dataset grows: a small and a large build of the same recipe, compared.

    python benchmarks/memory.py                      # 200 vs 2,000 tiny images (CPU, a minute or two)
    python benchmarks/memory.py --images 200 20000

Each build is ``python build.py`` in a fresh process on a generated recipe (tiny random models, small images,
few steps: the model's memory is the same for any count, so what can grow is the build's own bookkeeping:
plan, writers, progress, export). Its peak resident memory is what the kernel reports for that one child
(``os.wait4``). The last line is the ratio large/small; a build whose memory does not grow with the dataset
gives about 1 (the goal is <= 1.1).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from builders.recipe import Recipe, recipe_to_yaml  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--images",
        type=int,
        nargs=2,
        default=[200, 2000],
        metavar=("SMALL", "LARGE"),
        help="images in the small and the large build (default 200 2000)",
    )
    parser.add_argument("--steps", type=int, default=1, help="denoising steps (default 1)")
    parser.add_argument("--size", type=int, default=32, help="image height and width (default 32)")
    parser.add_argument("--batch-size", type=int, default=8, help="generation.batch_size (default 8)")
    parser.add_argument("--scoring", action="store_true", help="run the tiny random scorers too (off by default)")
    return parser.parse_args(argv)


def recipe_text(args: argparse.Namespace, images: int) -> str:
    """Two classes of ``images / 2`` training images each, on the tiny random models."""
    return recipe_to_yaml(
        Recipe.model_validate(
            {
                "name": f"memory-{images}",
                "model": {"id": "tiny-random", "safety_checker": False},
                "generation": {
                    "num_inference_steps": args.steps,
                    "height": args.size,
                    "width": args.size,
                    "batch_size": args.batch_size,
                },
                "classes": {
                    "fox": {"prompts": ["a fox", "a red fox", "a fox in snow"]},
                    "dog": {"prompts": ["a dog", "a small dog", "a dog on a beach"]},
                },
                "splits": {"train": images // 2},
                "scoring": {
                    "clip": {"enabled": args.scoring, "model": "tiny-random"},
                    "resnet50": {"enabled": args.scoring, "weights": "tiny-random"},
                },
            }
        )
    )


def peak_rss_of_build(recipe: Path, output_dir: Path, log: Path) -> tuple[float, float]:
    """Run build.py in a fresh process; return its peak resident memory (MiB) and its wall time (s)."""
    redirect = [(os.POSIX_SPAWN_OPEN, fd, str(log), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) for fd in (1, 2)]
    argv = [sys.executable, str(ROOT / "build.py"), str(recipe), "--output-dir", str(output_dir)]
    start = time.perf_counter()
    pid = os.posix_spawn(sys.executable, argv, {**os.environ, "HF_HUB_OFFLINE": "1"}, file_actions=redirect)
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"build of {recipe} failed:\n{log.read_text()[-3000:]}")
    return usage.ru_maxrss / 1024, seconds  # ru_maxrss is in KiB on Linux


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if any(images % 2 for images in args.images):
        raise SystemExit(f"--images {args.images}: each count must be even (two classes of equal size)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="synthdata-memory-") as scratch:
        for images in args.images:
            recipe = Path(scratch) / f"memory-{images}.yaml"
            recipe.write_text(recipe_text(args, images), encoding="utf-8")
            rows.append(
                (images, *peak_rss_of_build(recipe, Path(scratch) / f"out-{images}", Path(scratch) / f"{images}.log"))
            )
    print(
        f"tiny random models, {args.size}x{args.size}, {args.steps} step(s), batch {args.batch_size}, "
        f"scoring {'on' if args.scoring else 'off'}, {os.cpu_count()} CPUs\n"
    )
    print("images | build s | images/s | peak RSS MiB")
    for images, rss, seconds in rows:
        print(f"{images:6d} | {seconds:7.1f} | {images / seconds:8.1f} | {rss:12.1f}")
    (small, small_rss, _), (large, large_rss, _) = rows
    print(f"\nheadline: peak RSS ratio {large}/{small} images {large_rss / small_rss:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
