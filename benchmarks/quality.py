"""What the near-duplicate search costs past ``quality.exact_search_limit``: the faiss IVF index's training, the
search, the duplicate filter's greedy pass, the recall, and the memory of the whole quality pass.

    python -m benchmarks.quality [--images 100000] [--classes 1] [--width 512] [--exact]

Made-up unit embeddings (no model): each class's rows lie loosely around 100 centres (cosine about 0.5 to their
centre, as varied photos of one class sit in CLIP space), 80% train then 20% test, with 1% of the rows a nudged
copy of an earlier row (cosine about 0.99). Every class is over the limit (``--limit``, default 1,000), so each
is searched with the index; ``--exact`` also times exact search of the first class and counts the planted pairs
it finds, for comparison. Embeddings are written class by class as ``read_rows`` writes them, so the peak
memory is that of the pass (one class's embeddings at a time), not of holding the dataset.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from eval.quality import ClassEmbeddings, ClassSearch, QualitySettings, Rows, assess, class_drops, class_pairs

THRESHOLD = 0.95
CHUNK = 10_000  # rows made at a time


def made_up_chunk(label: int, chunk: int, width: int) -> tuple[np.ndarray, set[tuple[int, int]]]:
    """Rows ``chunk * CHUNK`` on of class ``label``: unit float32 embeddings, and the planted (earlier, later)
    near-duplicate pairs among them (positions in the class). Made in chunks so that making the data does not
    itself need more memory than the pass it measures."""
    centres = np.random.default_rng(label).standard_normal((100, width), dtype=np.float32)
    rng = np.random.default_rng([label, chunk])
    x = (centres[rng.integers(0, 100, CHUNK)] + rng.standard_normal((CHUNK, width), dtype=np.float32)) / np.sqrt(width)
    planted = set()
    for later in rng.choice(np.arange(1, CHUNK), CHUNK // 100, replace=False):
        earlier = int(rng.integers(0, later))
        x[later] = x[earlier] / np.linalg.norm(x[earlier]) + 0.14 * rng.standard_normal(width) / np.sqrt(width)
        planted.add((chunk * CHUNK + earlier, chunk * CHUNK + int(later)))
    return x / np.linalg.norm(x, axis=1, keepdims=True), planted


def made_up_rows(images: int, classes: int, width: int) -> tuple[Rows, set[tuple[int, int]]]:
    """``classes`` classes of ``images`` rows each (rows ordered split, class, index, as a build's plan), written
    to the pass's per-class files chunk by chunk, and the first class's planted pairs (positions in the class)."""
    train = int(images * 0.8)
    rows = Rows(class_names=[f"c{k}" for k in range(classes)], embeddings=ClassEmbeddings(width))
    planted = set()
    for split, start, stop in (("train", 0, train), ("test", train, images)):
        for label in range(classes):
            rows.ids += [f"{split}/c{label}/{i:06d}" for i in range(start, stop)]
            rows.splits += [split] * (stop - start)
            rows.labels += [label] * (stop - start)
            rows.hashes += [f"{label}/{i}".encode() for i in range(start, stop)]
            rows.eligible += [True] * (stop - start)
            for chunk in range(start // CHUNK, -(-stop // CHUNK)):
                x, pairs = made_up_chunk(label, chunk, width)
                first, last = max(start, chunk * CHUNK), min(stop, (chunk + 1) * CHUNK)
                rows.embeddings.append(np.full(last - first, label), x[first - chunk * CHUNK : last - chunk * CHUNK])
                planted |= {(a, b) for a, b in pairs if label == 0 and b < images}
    return rows, planted


def timed(label: str, fn, note: str = ""):
    """``fn()``, printing its wall-clock and CPU seconds (on a busy machine the CPU seconds are the steadier)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"{label:<18} {wall:8.1f} s wall {cpu:8.1f} s CPU   {note}")
    return result, wall


def first_class(rows: Rows, planted_positions: set[tuple[int, int]], limit: int, exact: bool) -> float:
    """Time the first class's index training, search and greedy filter (and exact search); the search seconds."""
    members = rows.by_class()[0]
    x = rows.embeddings.of_class(0)
    planted = {(int(members[a]), int(members[b])) for a, b in planted_positions}
    search, _ = timed("train", lambda: ClassSearch.of_class("c0", x, limit, "cpu"))
    pairs, search_s = timed(
        "search", lambda: class_pairs(rows, members, x, search, THRESHOLD), "both scopes, recall check"
    )
    drops, _ = timed("drop (greedy)", lambda: class_drops(members, x, rows, "near", search, THRESHOLD))
    found = {(p.a, p.b) for p in pairs}
    recall = search.recall
    print(f"class c0: {search.ivf.cells} cells, {search.ivf.probes} probed; recall {recall.share} ({recall.found} "
          f"of {recall.queries} sampled searches with a near-duplicate; nearest earlier row found "
          f"{recall.nearest} of {recall.sampled}); planted pairs found "
          f"{len(planted & found)} of {len(planted)}; near pairs {len(pairs)}, dropped {len(drops)}")  # fmt: skip
    if exact:
        exact_search = ClassSearch.of_class("c0", x, len(x), "cpu")
        exact_pairs, _ = timed("exact search", lambda: class_pairs(rows, members, x, exact_search, THRESHOLD))
        same = {(p.a, p.b, p.across_splits) for p in exact_pairs} == {(p.a, p.b, p.across_splits) for p in pairs}
        print(f"exact search: {len(exact_pairs)} near pairs, the same as the index's: {same}")
    return search_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100_000, help="images per class (all splits)")
    parser.add_argument("--classes", type=int, default=1)
    parser.add_argument("--width", type=int, default=512, help="embedding width (512: CLIP ViT-B/32)")
    parser.add_argument("--limit", type=int, default=1000, help="quality.exact_search_limit")
    parser.add_argument("--exact", action="store_true", help="also time exact search of the first class")
    args = parser.parse_args()
    rows, planted = made_up_rows(args.images, args.classes, args.width)
    print(f"{args.images:,} images per class x {args.classes} classes, width {args.width}, torch threads "
          f"{torch.get_num_threads()}; planted pairs in class c0: {len(planted)}")  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    settings = QualitySettings(exact_search_limit=args.limit)
    report, _ = timed("whole pass", lambda: assess(rows, settings, "cpu", drop_duplicates="near"), "every class")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    class_mib = args.images * args.width * 4 / 2**20
    print(f"peak RSS {peak:.0f} MiB: +{peak - before:.0f} MiB in the pass (before it {before:.0f}); embeddings of "
          f"one class {class_mib:.0f} MiB, of all {class_mib * args.classes:.0f} MiB")  # fmt: skip
    search_s = first_class(rows, planted, args.limit, args.exact)
    near = report.duplicates["near_search"]
    print(f"headline: recall {near['recall']} (nearest row {near['nearest_recall']:.4f}), search {search_s:.1f} s")


if __name__ == "__main__":
    main()
