"""What shard verification and copying exports cost (the figures behind ``builders/store/local.py``'s choice).

    python -m benchmarks.verification [--shards 200] [--mib-per-shard 2] [--dir /tmp/verification]

Writes made-up shards the way a build commits them (record with SHA-256 included), then times the resume check
(size, footer, ids: no image byte read), the export check (plus SHA-256 of every byte), copying every shard as the
export does (``copy_file``), and the hard links the export used to make. The page cache is warm, as it is right
after a build; a cold disk reads at its own speed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

import datasets

from builders.plan import content_fingerprint, make_plan
from builders.recipe import parse_recipe
from builders.store.local import OutputDir
from synthcore.outdir import copy_file

RECIPE = """
name: verification
model: {id: tiny-random}
classes: {fox: {prompts: [a fox]}}
splits: {train: COUNT}
generation: {batch_size: 8}
output: {shard_size: 8}
"""
FEATURES = datasets.Features({"id": datasets.Value("string"), "pixels": datasets.Value("binary")})


def timed(label: str, fn, mib: float) -> None:
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    print(f"{label:<42} {seconds * 1000:8.0f} ms   {mib / seconds:8.0f} MiB/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", type=int, default=200)
    parser.add_argument("--mib-per-shard", type=float, default=2.0)
    parser.add_argument("--dir", default="/tmp/verification")
    args = parser.parse_args()
    root = Path(args.dir)
    shutil.rmtree(root, ignore_errors=True)
    recipe = parse_recipe(RECIPE.replace("COUNT", str(8 * args.shards)), "verification.yaml")
    shards = list(make_plan(recipe, content_fingerprint(recipe, "cpu", "float32")).shards)
    store = OutputDir(root)
    store.shards.mkdir(parents=True)
    row_bytes = int(args.mib_per_shard * 2**20 / 8)
    start = time.perf_counter()
    for shard in shards:
        writer = store.open_shard(shard, FEATURES)
        writer.write([{"id": job.id, "pixels": os.urandom(row_bytes)} for job in shard.jobs])
        writer.commit()
    mib = sum(store.shard_path(s).stat().st_size for s in shards) / 2**20
    print(f"{len(shards)} shards, {mib:.0f} MiB, written and committed in {time.perf_counter() - start:.1f} s")
    timed("resume check (size, footer, ids)", lambda: store.audit(shards), mib)
    timed("export check (+ SHA-256 of every byte)", lambda: store.verify(shards), mib)
    for name in ("copies", "links"):
        (root / name).mkdir()
    timed(
        "copy every shard (copy_file)",
        lambda: [copy_file(store.shard_path(s), root / "copies" / s.key) for s in shards],
        mib,
    )
    timed(
        "hard-link every shard (before)",
        lambda: [os.link(store.shard_path(s), root / "links" / s.key) for s in shards],
        mib,
    )
    shutil.rmtree(root)


if __name__ == "__main__":
    main()
