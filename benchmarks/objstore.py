"""What an object-storage output costs: the same build to a local directory and to ``s3://`` (moto's S3 server
on 127.0.0.1, started here), alternately, in fresh processes.

    python benchmarks/objstore.py                  # the scale test recipe: 16 tiny images in 8 shards, 2 rounds
    python benchmarks/objstore.py --rounds 3

Loopback S3 has no network latency: what this shows is the work the store adds (one PUT per shard and record,
progress objects, listings, the export's uploads), not what a real store's round trips add (tens of ms each).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers import SCALE_RECIPE, s3_server  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with s3_server("bench") as (store_env, fs):
        env = {**os.environ, **store_env, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
        fs.mkdir("bench")
        seconds, objects = _rounds(args.rounds, env, fs)
    best = {kind: min(values) for kind, values in seconds.items()}
    print(f"best of {args.rounds}: local {best['local']:.1f} s, s3 {best['s3']:.1f} s ({objects} objects in the store)")


def _rounds(rounds: int, env: dict[str, str], fs) -> tuple[dict[str, list[float]], int]:
    """Seconds per build, local and into the store, for each round; and the objects of the first build there."""
    work = Path(tempfile.mkdtemp(prefix="objstore-bench-"))
    recipe = work / "recipe.yaml"
    recipe.write_text(SCALE_RECIPE.replace("COUNT", "6"), encoding="utf-8")
    seconds: dict[str, list[float]] = {"local": [], "s3": []}
    for i in range(rounds):
        for kind, target in (("local", str(work / f"local-{i}")), ("s3", f"s3://bench/scale-{i}")):
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, str(ROOT / "build.py"), str(recipe), "--output-dir", target],
                cwd=ROOT,
                env={**env, "SYNTHDATA_CACHE": str(work / "cache")},
                check=True,
                capture_output=True,
            )
            seconds[kind].append(time.perf_counter() - started)
            print(f"round {i + 1}: {kind:5s} {seconds[kind][-1]:.1f} s", flush=True)
    return seconds, len(fs.find("bench/scale-0"))


if __name__ == "__main__":
    main()
