"""What writing the formats beside Parquet costs as the dataset grows: ImageFolder and WebDataset from ``data/``.

    python benchmarks/formats.py --sizes 10000 100000 1000000 --classes 10 --workdir /tmp/formatsbench

For each size, a fabricated build output (``benchmarks/scale.py``'s: shards as a build writes them, a tiny PNG per
row, every column filled) is exported to ``data/`` once and kept under ``--workdir``. Then each format is written
from it (``builders.formats.export.export_formats``, as ``build.py --export-only`` does) in a fresh process, after
its earlier folder is removed: the seconds, the CPU seconds of all its threads (the work, apart from waiting on a
busy machine), the files or shards written, and the peak resident memory above the process's memory just before
(the kernel's high-water mark, reset then). The goal: under a minute per format at
10^6 images of 10 classes, memory flat in N.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.scale import FABRICATED, fabricate_output, measure_export, peak_resident_bytes, resident_bytes  # noqa: E402

FORMATS = ["imagefolder", "webdataset"]


@dataclass(frozen=True)
class FormatFigures:
    name: str
    images: int
    files: int
    seconds: float
    cpu_seconds: float
    peak_mb: float

    def row(self) -> str:
        return (
            f"{self.name:>12} | {self.images:>11,} | {self.files:>9,} | {self.seconds:8.1f} | "
            f"{self.cpu_seconds:5.1f} | {self.peak_mb:10.1f}"
        )


HEADER = "      format |      images |     files | export s | CPU s | peak MiB +"


def measure_format(name: str, images: int, root: Path) -> FormatFigures:
    """One format written from the dataset at ``root``, from scratch, in the calling process (a fresh one)."""
    from builders.export import BUILD_OUTPUT
    from builders.formats.choice import chosen
    from builders.formats.export import WORK, export_formats
    from builders.formats.source import SourceData
    from synthcore.outdir import WORK_DIR, claimed

    shutil.rmtree(root / name, ignore_errors=True)
    shutil.rmtree(root / WORK_DIR / WORK, ignore_errors=True)
    with claimed(root, BUILD_OUTPUT) as owned:
        Path("/proc/self/clear_refs").write_text("5")  # resets the peak resident memory (VmHWM) to the current
        baseline = resident_bytes()
        started, cpu = time.perf_counter(), time.process_time()
        (report,) = export_formats(owned, SourceData.at(root), chosen((), name))
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        peak = peak_resident_bytes()
    assert report.written and sum(report.written.rows.values()) == images
    files = sum(report.written.files.values())
    return FormatFigures(name, images, files, seconds, cpu, (peak - baseline) / 2**20)


def prepared(images: int, classes: int, workdir: Path) -> Path:
    """The fabricated output of ``images`` images, exported to ``data/`` (made once, kept)."""
    root = workdir / f"formats-{images}-{classes}"
    context = multiprocessing.get_context("spawn")
    if not (root / FABRICATED).exists():
        shutil.rmtree(root, ignore_errors=True)
        with ProcessPoolExecutor(1, mp_context=context) as fresh:
            fresh.submit(fabricate_output, images, classes, root).result()
    if not (root / "data").is_dir():
        with ProcessPoolExecutor(1, mp_context=context) as fresh:
            fresh.submit(measure_export, images, classes, root).result()
    return root


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10**4, 10**5, 10**6], help="images (default 10^4..6)")
    parser.add_argument("--classes", type=int, default=10, help="classes (default 10)")
    parser.add_argument("--formats", nargs="+", default=FORMATS, choices=FORMATS, help="formats (default both)")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "synthdata-formats")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(
        f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}, load average "
        f"{os.getloadavg()[0]:.1f}; {args.classes} classes, 80/10/10 splits",
        flush=True,
    )
    print(HEADER, flush=True)
    figures = []
    for images in args.sizes:
        root = prepared(images, args.classes, args.workdir)
        for name in args.formats:
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as fresh:
                figures.append(fresh.submit(measure_format, name, images, root).result())
            print(figures[-1].row(), flush=True)
    largest = max(f.images for f in figures)
    for f in (f for f in figures if f.images == largest):
        print(f"headline: {f.name} seconds at {f.images:,} images (+{f.peak_mb:.1f} MiB) {f.seconds:.1f}")


if __name__ == "__main__":
    main()
