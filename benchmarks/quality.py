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


def made_up_class(count: int, width: int, seed: int) -> tuple[np.ndarray, set[tuple[int, int]]]:
    """One class's unit embeddings and its planted (earlier, later) near-duplicate pairs (positions)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((100, width))
    x = (centres[rng.integers(0, 100, count)] + rng.standard_normal((count, width))) / np.sqrt(width)
    planted = set()
    for later in rng.choice(np.arange(1, count), count // 100, replace=False):
        earlier = int(rng.integers(0, later))
        x[later] = x[earlier] / np.linalg.norm(x[earlier]) + 0.14 * rng.standard_normal(width) / np.sqrt(width)
        planted.add((earlier, int(later)))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), planted


def made_up_rows(images: int, classes: int, width: int) -> tuple[Rows, set[tuple[int, int]]]:
    """``classes`` classes of ``images`` rows each (rows ordered split, class, index, as a build's plan; a class
    is made again for each split rather than kept) and the first class's planted pairs (positions in the class)."""
    train = int(images * 0.8)
    rows = Rows(class_names=[f"c{k}" for k in range(classes)], embeddings=ClassEmbeddings(width))
    for split, start, stop in (("train", 0, train), ("test", train, images)):
        for label in range(classes):
            x, planted = made_up_class(images, width, seed=label)
            rows.ids += [f"{split}/c{label}/{i:06d}" for i in range(start, stop)]
            rows.splits += [split] * (stop - start)
            rows.labels += [label] * (stop - start)
            rows.hashes += [f"{label}/{i}".encode() for i in range(start, stop)]
            rows.eligible += [True] * (stop - start)
            rows.embeddings.append(np.full(stop - start, label), x[start:stop])
    return rows, made_up_class(images, width, seed=0)[1]


def timed(fn):
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def first_class(rows: Rows, planted_positions: set[tuple[int, int]], limit: int, exact: bool) -> float:
    """Time the first class's index training, search and greedy filter (and exact search); the search seconds."""
    members = rows.by_class()[0]
    x = rows.embeddings.of_class(0)
    planted = {(int(members[a]), int(members[b])) for a, b in planted_positions}
    search, train_s = timed(lambda: ClassSearch.of_class("c0", x, limit, "cpu"))
    pairs, search_s = timed(lambda: class_pairs(rows, members, x, search, THRESHOLD))
    drops, drop_s = timed(lambda: class_drops(members, x, rows, "near", search, THRESHOLD))
    found = {(p.a, p.b) for p in pairs}
    print(f"class c0: {search.ivf.cells} cells, {search.ivf.probes} probed")
    print(f"train s            {train_s:8.1f}")
    print(f"search s           {search_s:8.1f}   (both scopes, with the recall check of 1,000 sampled rows)")
    print(f"drop (greedy) s    {drop_s:8.1f}")
    print(
        f"recall             {search.recall.share:8.4f}   ({search.recall.found} of {search.recall.queries} searches)"
    )
    print(
        f"planted found      {len(planted & found):8d} of {len(planted)}; near pairs {len(pairs)}, dropped {len(drops)}"
    )
    if exact:
        exact_search = ClassSearch.of_class("c0", x, len(x), "cpu")
        exact_pairs, exact_s = timed(lambda: class_pairs(rows, members, x, exact_search, THRESHOLD))
        same = {(p.a, p.b, p.across_splits) for p in exact_pairs} == {(p.a, p.b, p.across_splits) for p in pairs}
        print(f"exact search s     {exact_s:8.1f}   (pairs {len(exact_pairs)}, the same as the index's: {same})")
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
    report, pass_s = timed(lambda: assess(rows, settings, "cpu", drop_duplicates="near"))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    class_mib = args.images * args.width * 4 / 2**20
    print(f"whole pass s       {pass_s:8.1f}   (every class: index, search, filter, diversity, picture)")
    print(f"peak RSS MiB       {peak:8.0f}   (before the pass {before:.0f}; embeddings of one class {class_mib:.0f}, "
          f"of all {class_mib * args.classes:.0f})")  # fmt: skip
    search_s = first_class(rows, planted, args.limit, args.exact)
    print(f"headline: recall {report.duplicates['near_search']['recall']:.4f}, search {search_s:.1f} s")


if __name__ == "__main__":
    main()
