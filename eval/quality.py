"""Is the dataset any good? Duplicates, train/test leakage, diversity per class, and the distance to real images.

Everything here is computed from a dataset's Parquet files in the order of its rows (a build's plan order:
split, class, index), from two things each row already has: its image (decoded to RGBA pixels and hashed,
for exact duplicates) and its ``clip_embedding`` (the unit CLIP image embedding the scorer stored, for
near-duplicates, diversity and CMMD). No model is loaded, except CLIP to embed a reference dataset of real images.

- **Duplicates**: within each split and class, a row *repeats* an earlier row when its decoded pixels are the
  same (``exact``) or, failing that, when the cosine similarity of their embeddings is at least
  ``near_duplicate_threshold`` (``near``). Across splits, a row repeats a row of the same class in an earlier
  split (leakage: a test image that nearly repeats a train image). Each repeating row is counted once per scope
  and listed with the earlier row it is closest to (``duplicates.parquet``). The search (``eval.nearest``) is
  exact, by blocked matrix products on the device, for classes of up to ``exact_search_limit`` rows (all splits);
  above, a faiss IVF-Flat index finds each row's nearest earlier row approximately, and its recall against
  exact search on sampled rows is reported (``duplicates.near_search``).
- **Dropping duplicates** (``filters.drop_duplicates``): greedy in plan order among the rows the score filters
  keep: a row is dropped when it repeats a row already kept, so the first of every group stays.
- **Diversity** per split and class: the mean pairwise cosine distance of the embeddings and their Vendi score
  (Friedman & Dieng, 2023): exp of the entropy of the eigenvalues of K/n, K the cosine-similarity matrix; it
  reads as an effective number of distinct images, from 1 (all alike) to n.
- **CMMD** (Jayasumana et al., CVPR 2024) to a reference dataset: the squared MMD with a Gaussian RBF kernel
  (sigma 10) between the two sets of unit CLIP embeddings, x 1000, with the biased (minimum-variance) estimator
  of the paper's reference implementation (google-research ``cmmd/distance.py``, which also normalizes its CLIP
  embeddings). 0 for identical sets, larger the further apart. Each set is a fixed-seed sample of at most
  ``CMMD_SAMPLE`` embeddings (the cost grows with the product of the two sizes).

The pass reads the rows once, keeping the embeddings on disk by class, then works one class at a time, so it
holds one class's embeddings (plus the samples for CMMD and the picture), not the dataset's.
"""

from __future__ import annotations

import hashlib
import logging
import math
import tempfile
import time
from collections.abc import Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from eval.filters import keep_mask
from eval.nearest import (
    _COLUMNS,
    _ROWS,
    RECALL_QUERIES,
    ExactIndex,
    IvfIndex,
    Recall,
    best_earlier,
    greedy_repeats,
    measure_recall,
)
from eval.preprocess import rgb_tensor
from eval.scorers.clip import EMBEDDING, Clip
from synthcore.columns import ID, IMAGE, LABEL
from synthcore.image_hashes import image_hashes
from synthcore.images import DatasetRowsError, ImageError, SplitColumns, check_split, decode_image
from synthcore.model_refs import choose_dtype, is_local_path

log = logging.getLogger("synthdata.eval")

PAIRS_FILE = "duplicates.parquet"
DEFAULT_THRESHOLD = 0.95
EXACT_SEARCH_LIMIT = 100_000
CMMD_SIGMA = 10.0
CMMD_SCALE = 1000.0
CMMD_SAMPLE = 20_000  # most embeddings of each set CMMD compares
PROJECTION_POINTS = 2000  # most points per split and class in the 2-D picture
PICTURE_POINTS = 20_000  # most points in the 2-D picture
SAMPLE_SEED = 0
PAIRS_SCHEMA = pa.schema(
    [("id_a", pa.string()), ("id_b", pa.string()), ("similarity", pa.float32()), ("kind", pa.string()),
     ("across_splits", pa.bool_())]
)  # fmt: skip


class QualityError(ValueError):
    """A reference dataset or option the quality pass cannot use, with what was expected."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ReferenceSettings(_Strict):
    """Real images to measure the distance to (CMMD): any ``load_dataset`` dataset with an Image and a
    ClassLabel column, whose class names are ours or are mapped to ours by ``label_map`` (theirs -> ours);
    rows of other classes are left out. Every split of it is used unless ``split`` names one."""

    dataset: str = Field(min_length=1, description="a Hub dataset id or a local directory (`load_dataset`'s path)")
    label_map: dict[str, str] = Field(default={}, description="its class names mapped to ours (theirs -> ours)")
    split: str | None = Field(default=None, description="the split to read (`null`: every split)")
    image_column: str = Field(default=IMAGE, description="its Image column")
    label_column: str = Field(default=LABEL, description="its ClassLabel column")

    @field_validator("dataset")
    @classmethod
    def _existing_local_path(cls, value: str) -> str:
        if is_local_path(value) and not Path(value).expanduser().exists():
            raise ValueError(f"local dataset {value!r} does not exist (expected a Hub dataset id or a directory)")
        return value


class QualitySettings(_Strict):
    """The recipe's ``quality`` section (and ``python -m eval``'s quality options)."""

    enabled: bool = Field(default=True, description="measure duplicates, leakage, diversity and CMMD after the build")
    near_duplicate_threshold: float = Field(
        default=DEFAULT_THRESHOLD,
        gt=0,
        le=1,
        description="CLIP cosine similarity from which two images are near duplicates, above 0 and at most 1",
    )
    exact_search_limit: int = Field(
        default=EXACT_SEARCH_LIMIT,
        ge=2,
        description="images of one class up to which near duplicates are searched exactly; a larger class is searched "
        "approximately (faiss IVF index, recall reported)",
    )
    reference: ReferenceSettings | None = Field(
        default=None,
        description="real images to measure the distance to (CMMD); a string is short for `{dataset: ...}`",
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed_limit(cls, data):
        """The key's old name says what changed rather than just "unknown key"."""
        if isinstance(data, dict) and "max_exact_per_class" in data:
            raise ValueError(
                "max_exact_per_class was renamed exact_search_limit: a class with more images is now searched "
                "approximately (faiss IVF index, recall reported) instead of not at all; rename the key"
            )
        return data

    @field_validator("reference", mode="before")
    @classmethod
    def _dataset_only(cls, value):
        """``reference: DIR`` is short for ``reference: {dataset: DIR}``."""
        return {"dataset": value} if isinstance(value, str) else value


def quality_problems(scoring, filters, quality: QualitySettings) -> list[str]:
    """What the recipe asks of the quality pass that its ``scoring`` cannot give (checked when it loads)."""
    embeddings = scoring.clip.enabled and scoring.clip.embeddings
    problems = []
    if not embeddings and filters.drop_duplicates == "near":
        problems.append(
            "filters.drop_duplicates: 'near' compares CLIP embeddings, but scoring.clip.embeddings is off "
            "(or scoring.clip.enabled is false); use 'exact' or turn them on"
        )
    if not quality.enabled and filters.drop_duplicates != "none":
        problems.append("filters.drop_duplicates: needs the quality pass, but quality.enabled is false")
    if not embeddings and quality.reference is not None:
        problems.append("quality.reference: CMMD compares CLIP embeddings, but scoring.clip.embeddings is off")
    return problems


# -- reading a dataset's rows -------------------------------------------------------------------------------------
class ClassEmbeddings:
    """Every row's embedding, appended to one file per class as the rows are read, so that the pass holds one
    class's embeddings at a time rather than the dataset's (2 KB a row with ViT-B/32: 2 GB per 10^6 rows).
    The files live in a temporary directory that goes with this object."""

    def __init__(self, width: int):
        self.width = width
        self._dir = tempfile.TemporaryDirectory(prefix="synthdata-embeddings-")

    def append(self, labels: np.ndarray, matrix: np.ndarray) -> None:
        if matrix.shape[1] != self.width:
            raise QualityError(f"{EMBEDDING}: rows of different lengths {sorted({self.width, matrix.shape[1]})}")
        for label in np.unique(labels):
            with open(self._path(int(label)), "ab") as file:
                file.write(np.ascontiguousarray(matrix[labels == label], dtype=np.float32).tobytes())

    def of_class(self, label: int) -> torch.Tensor:
        """The class's embeddings in row order, (rows of the class, width) float32 on the CPU."""
        path = self._path(label)
        if not path.exists():
            return torch.empty((0, self.width))
        return torch.from_numpy(np.fromfile(path, dtype=np.float32).reshape(-1, self.width))

    def _path(self, label: int) -> Path:
        return Path(self._dir.name) / f"{label}.f32"


@dataclass
class Rows:
    """What the quality pass needs of every row, in row order: ids, splits, labels, pixel hashes, embeddings
    (by class), and whether the score filters keep the row (``eligible``)."""

    class_names: list[str]
    ids: list[str] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    hashes: list[bytes] = field(default_factory=list)
    eligible: list[bool] = field(default_factory=list)
    embeddings: ClassEmbeddings | None = None  # None when a row has no embedding (or the column is absent)

    @property
    def split_order(self) -> list[str]:
        return list(dict.fromkeys(self.splits))

    # The lists as arrays, made once after reading (the pass indexes them once per class).
    @cached_property
    def split_array(self) -> np.ndarray:
        return np.asarray(self.splits)

    @cached_property
    def label_array(self) -> np.ndarray:
        return np.asarray(self.labels, dtype=np.int64)

    @cached_property
    def eligible_array(self) -> np.ndarray:
        return np.asarray(self.eligible, dtype=bool)

    def by_class(self) -> list[np.ndarray]:
        """The rows of each class, in row order."""
        return groups_of(self.label_array, len(self.class_names))


def groups_of(keys: np.ndarray, count: int) -> list[np.ndarray]:
    """The positions of each key ``0..count-1`` in ``keys``, in order: one stable sort, not a pass per key."""
    order = np.argsort(keys, kind="stable")
    return np.split(order, np.searchsorted(keys[order], np.arange(1, count)))


def pixel_hash(encoded: bytes) -> bytes:
    """A hash of what the image looks like: its decoded pixels as RGBA, whatever its mode and encoding.

    Two encodings of one picture (PNG and lossless WebP, RGB and an exact palette image, RGB and opaque RGBA) hash
    alike; two palette images with the same indices but different palettes do not.
    """
    image = decode_image(encoded).convert("RGBA")
    return hashlib.blake2b(f"{image.size}".encode() + image.tobytes(), digest_size=16).digest()


def read_rows(
    parts: Sequence[tuple[str, Path]], label_column: str = LABEL, filters=None, decode_threads: int = 4
) -> Rows:
    """The rows of ``parts`` ((split, Parquet file) in row order), streamed a row group at a time so a dataset
    larger than memory can be read. A row without an ``id`` column is named ``<split>/<row index>``.
    ``filters`` (a ``FilterSettings``): rows failing its score rules are not ``eligible`` to stay."""
    features = datasets.Features.from_arrow_schema(pq.read_schema(parts[0][1]))
    rows = Rows(class_names=features[label_column].names)
    image = next(name for name, feature in features.items() if isinstance(feature, datasets.Image))
    embeddings: ClassEmbeddings | None = None
    complete, seen = True, False  # every row has a finite embedding; some batch has the column
    counts: dict[str, int] = {}
    with ThreadPoolExecutor(decode_threads, thread_name_prefix="synthdata-hash") as pool:
        for split, batch in _batches(parts, [label_column, image], filters):
            start = counts.get(split, 0)
            counts[split] = start + batch.num_rows
            ids = batch[ID].to_pylist() if ID in batch.column_names else None
            labels = batch[label_column].to_pylist()
            rows.ids += ids or [f"{split}/{start + i}" for i in range(batch.num_rows)]
            rows.splits += [split] * batch.num_rows
            rows.labels += labels
            rows.hashes += pool.map(pixel_hash, batch[image].combine_chunks().field("bytes").to_pylist())
            rows.eligible += keep_mask(batch, filters).to_pylist() if filters else [True] * batch.num_rows
            matrix = _matrix(batch[EMBEDDING]) if EMBEDDING in batch.column_names else None
            seen |= matrix is not None
            complete &= matrix is not None and matrix.shape[1] > 0 and bool(np.isfinite(matrix).all())
            if complete:
                embeddings = embeddings or ClassEmbeddings(matrix.shape[1])
                embeddings.append(np.asarray(labels), matrix)
    if complete and embeddings is not None:
        rows.embeddings = embeddings
    elif seen:
        log.warning("some rows have no %s: near-duplicates, diversity and CMMD are not measured", EMBEDDING)
    return rows


def _batches(parts, columns: list[str], filters) -> Iterator[tuple[str, pa.Table]]:
    wanted = [ID, *columns, EMBEDDING, *(filters.columns() if filters else [])]
    for split, path in parts:
        file = pq.ParquetFile(path)
        present = [c for c in dict.fromkeys(wanted) if c in file.schema_arrow.names]
        for batch in file.iter_batches(batch_size=256, columns=present):
            yield split, pa.Table.from_batches([batch])


def _matrix(column: pa.ChunkedArray) -> np.ndarray:
    """A list<float> column of equal-length rows as an (n, d) float32 array (a null row becomes NaN)."""
    values = column.combine_chunks()
    lengths = set(pa.compute.list_value_length(values).drop_null().to_pylist())
    if len(lengths) > 1:
        raise QualityError(f"{EMBEDDING}: rows of different lengths {sorted(lengths)}")
    width = lengths.pop() if lengths else 0
    filled = pa.compute.fill_null(values, pa.scalar([math.nan] * width, values.type))
    return filled.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(values), width)


def take(x: torch.Tensor, positions: np.ndarray) -> torch.Tensor:
    """``x[positions]`` (ascending positions): a view rather than a copy when they are one run, as a split's rows
    of a class usually are (a build writes them in plan order)."""
    if len(positions) and positions[-1] - positions[0] + 1 == len(positions):
        return x[int(positions[0]) : int(positions[-1]) + 1]
    return x[torch.from_numpy(np.asarray(positions, dtype=np.int64))]


def fixed_sample(count: int, limit: int) -> np.ndarray:
    """At most ``limit`` of the positions ``0..count-1``, drawn with a fixed seed, in order (all when fewer)."""
    if count <= limit:
        return np.arange(count)
    return np.sort(np.random.default_rng(SAMPLE_SEED).choice(count, limit, replace=False))


# -- duplicates -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pair:
    """Row ``b`` repeats the earlier row ``a`` (indices into ``Rows``)."""

    a: int
    b: int
    similarity: float | None
    kind: str  # exact | near
    across_splits: bool


@dataclass
class ClassSearch:
    """How one class's near-duplicates are searched: exactly, or (above ``quality.exact_search_limit``) with
    an IVF index trained on the class's embeddings, whose recall is measured on sampled rows."""

    images: int
    device: torch.device | str
    ivf: IvfIndex | None = None
    recall: Recall = field(default_factory=Recall)

    @classmethod
    def of_class(cls, name: str, x: torch.Tensor, limit: int, device) -> ClassSearch:
        if len(x) <= limit:
            return cls(len(x), device)
        started = time.perf_counter()
        ivf = IvfIndex.train(x)
        log.info(
            "class %r: %d images, over quality.exact_search_limit (%d): approximate search, %d cells trained in %.1f s",
            *(name, len(x), limit, ivf.cells, time.perf_counter() - started),
        )
        return cls(len(x), device, ivf)

    def new_index(self) -> ExactIndex | IvfIndex:
        """An empty index of this class's kind (an IVF one shares the trained cells)."""
        return self.ivf.empty() if self.ivf is not None else ExactIndex(self.device)

    def summary(self) -> dict:
        return {
            "images": self.images,
            "cells": self.ivf.cells,
            "probes": self.ivf.probes,
            **self.recall.summary(),
        }


def class_pairs(rows: Rows, members: np.ndarray, x: torch.Tensor | None, search, threshold: float) -> list[Pair]:
    """The rows of one class (``members``, its embeddings ``x`` or None) that repeat an earlier one, once per
    scope (within its split; across splits) with the earlier row it is closest to."""
    pairs = _exact_pairs(rows, members, x)
    if x is not None and len(members):
        pairs += _near_pairs(rows, members, x, {(p.b, p.across_splits) for p in pairs}, search, threshold)
    return pairs


def _exact_pairs(rows: Rows, members: np.ndarray, x: torch.Tensor | None) -> list[Pair]:
    first: dict[bytes, dict[str, tuple[int, int]]] = {}  # pixel hash -> split -> (row, position in the class)
    pairs = []

    def pair(earlier: tuple[int, int], position: int, across: bool) -> Pair:
        similarity = None if x is None else float(x[earlier[1]] @ x[position])
        return Pair(earlier[0], int(members[position]), similarity, "exact", across)

    for position, j in enumerate(members):
        seen = first.setdefault(rows.hashes[j], {})
        split = rows.splits[j]
        if split in seen:
            pairs.append(pair(seen[split], position, False))
        earlier = [e for s, e in seen.items() if s != split]
        if earlier:
            pairs.append(pair(earlier[0], position, True))
        seen.setdefault(split, (int(j), position))
    return pairs


def _near_pairs(
    rows: Rows, members: np.ndarray, x: torch.Tensor, exact: set, search: ClassSearch, threshold: float
) -> list[Pair]:
    """Each split's rows searched among its earlier rows, then among the earlier splits' rows (an index that
    grows by a split at a time); on an IVF index, the answers for sampled rows are checked exactly."""
    splits = rows.split_array[members]
    sampled = fixed_sample(len(members), RECALL_QUERIES) if search.ivf is not None else np.empty(0, dtype=int)
    earlier, before = search.new_index(), np.empty(0, dtype=int)  # earlier splits' rows; their positions
    pairs = []
    for split in rows.split_order:
        here = np.flatnonzero(splits == split)
        if not len(here):
            continue
        queries = take(x, here)
        searches = [(False, here, best_earlier(queries, search.new_index(), causal=True))]
        if len(before):
            searches.append((True, before, best_earlier(queries, earlier, causal=False)))
        checked = np.flatnonzero(np.isin(here, sampled))
        for across, candidates, (best, where) in searches:
            for k in np.flatnonzero(best.numpy() >= threshold):
                if (members[here[k]], across) not in exact:
                    closest = int(members[candidates[where[k]]])
                    pairs.append(Pair(closest, int(members[here[k]]), float(best[k]), "near", across))
            if len(checked):
                limits = np.full(len(checked), len(candidates)) if across else checked
                of_candidates = take(x, candidates) if across else queries
                search.recall.add(
                    measure_recall(queries[checked], best[checked], of_candidates, limits, threshold, search.device)
                )
        earlier.add(queries)
        before = np.concatenate([before, here])
    return pairs


def class_drops(
    members: np.ndarray, x: torch.Tensor | None, rows: Rows, kind: str, search, threshold: float
) -> np.ndarray:
    """The rows of one class ``filters.drop_duplicates`` drops: greedy in row order over all splits among the
    eligible rows (so a test row repeating a kept train row goes, and the first of every group stays)."""
    eligible = rows.eligible_array[members]
    drop = np.zeros(len(members), dtype=bool)
    kept_hashes: set[bytes] = set()
    for position in np.flatnonzero(eligible):
        drop[position] = rows.hashes[members[position]] in kept_hashes
        kept_hashes.add(rows.hashes[members[position]])
    if kind == "near" and x is not None and len(members):
        drop |= greedy_repeats(x, eligible & ~drop, threshold, search.new_index())
    return members[drop]


def duplicate_counts(pairs: Sequence[Pair], near_searched: bool, threshold: float) -> dict:
    """The ``duplicates`` object of the summary: rows repeating an earlier row, by kind and scope. ``near`` is
    null when near-duplicates could not be searched (no embeddings)."""

    def count(kind: str) -> dict:
        of_kind = [p for p in pairs if p.kind == kind]
        return {
            "within_split": sum(not p.across_splits for p in of_kind),
            "across_splits": sum(p.across_splits for p in of_kind),
        }

    return {"exact": count("exact"), "near": count("near") if near_searched else None, "threshold": threshold}


def near_search_summary(searches: dict[str, ClassSearch], limit: int) -> dict:
    """``duplicates.near_search``: exact for every class, or which classes an IVF index searched, and its
    recall (the share of sampled rows with a near-duplicate whose duplicate it found; and, as a diagnostic, the
    share whose nearest earlier row it found at any similarity), pooled and per class."""
    approximate = {name: s for name, s in searches.items() if s.ivf is not None}
    if not approximate:
        return {"method": "exact", "exact_search_limit": limit}
    pooled = Recall()
    for search in approximate.values():
        pooled.add(search.recall)
    return {
        "method": "faiss-ivf-flat",
        "exact_search_limit": limit,
        **pooled.summary(),
        "classes": {name: s.summary() for name, s in approximate.items()},
    }


# -- diversity and distance to real images ------------------------------------------------------------------------
def diversity(embeddings: torch.Tensor) -> dict:
    """Mean pairwise cosine distance and Vendi score of unit embeddings (None for fewer than two rows).

    The Vendi score's eigenvalues of K/n (K = X X^T, n x n) are those of X^T X / n (d x d), so it costs
    O(n d^2) rather than O(n^3); the sums are taken ``_COLUMNS`` rows at a time in float64, so the memory is
    that of a block, not of a float64 copy of the class."""
    n = len(embeddings)
    if n < 2:
        return {"images": n, "mean_cosine_distance": None, "vendi": None}
    width = embeddings.shape[1]
    total, gram, squares = torch.zeros(width, dtype=torch.float64), torch.zeros((width, width), dtype=torch.float64), 0
    for b0 in range(0, n, _COLUMNS):
        x = embeddings[b0 : b0 + _COLUMNS].double()
        total += x.sum(dim=0)
        gram += x.T @ x
        squares += float((x * x).sum())
    mean_similarity = (total @ total - squares) / (n * (n - 1))
    eigenvalues = torch.linalg.eigvalsh(gram / n).clamp(min=0)
    p = eigenvalues[eigenvalues > 0] / eigenvalues.sum()
    return {
        "images": n,
        "mean_cosine_distance": float(1 - mean_similarity),
        "vendi": float(torch.exp(-(p * p.log()).sum())),
    }


def cmmd(x: torch.Tensor, y: torch.Tensor, device: torch.device | str = "cpu") -> float:
    """CMMD between two sets of embeddings: 1000 x the biased MMD^2 estimate with a Gaussian RBF kernel of
    bandwidth sigma = 10, as google-research's cmmd/distance.py computes it (blocked here, float64 sums), on
    fixed-seed samples of at most ``CMMD_SAMPLE`` of each set."""
    if not len(x) or not len(y):
        raise ValueError("CMMD needs at least one embedding in each set")
    x, y = x[fixed_sample(len(x), CMMD_SAMPLE)], y[fixed_sample(len(y), CMMD_SAMPLE)]
    mmd2 = _mean_kernel(x, x, device) + _mean_kernel(y, y, device) - 2 * _mean_kernel(x, y, device)
    return CMMD_SCALE * max(mmd2, 0.0)  # a squared distance: below 0 only by rounding


def _mean_kernel(a: torch.Tensor, b: torch.Tensor, device) -> float:
    """The mean of k(a_i, b_j) - 1 over all pairs. On unit vectors the kernel lies in [exp(-0.02), 1], so the
    three means CMMD combines differ in their fifth or sixth digit: ``expm1`` keeps those digits in float32
    (the 1s cancel exactly), and the sums are float64."""
    gamma = 1 / (2 * CMMD_SIGMA**2)
    total = 0.0
    for i in range(0, len(a), _ROWS):
        block = a[i : i + _ROWS].to(device).float()
        for j in range(0, len(b), _COLUMNS):
            other = b[j : j + _COLUMNS].to(device).float()
            squared = (block * block).sum(1)[:, None] + (other * other).sum(1)[None, :] - 2 * block @ other.T
            total += float(torch.expm1(-gamma * squared.clamp(min=0)).sum(dtype=torch.float64))
    return total / (len(a) * len(b))


@dataclass(frozen=True)
class Reference:
    """A reference dataset's CLIP embeddings and labels (our class indices), and what it is."""

    name: str
    embeddings: torch.Tensor
    labels: np.ndarray


def load_reference(
    settings: ReferenceSettings,
    class_names: list[str],
    clip_model: str,
    device: torch.device,
    dtype: torch.dtype,
    batch_size: int = 32,
) -> Reference:
    """Embed the reference dataset's images of our classes with the run's CLIP model."""
    parts, lookup = open_reference(settings, class_names)
    clip = Clip(clip_model, device, dtype)
    embeddings, labels = [], []
    for part in parts:
        labels_there = part[settings.label_column][:]
        mapped = [lookup[y] if y is not None and y >= 0 else -1 for y in labels_there]  # -1: unlabelled
        keep = [i for i, y in enumerate(mapped) if y >= 0]
        part = part.select(keep).cast_column(settings.image_column, datasets.Image(decode=False))
        for start in range(0, len(keep), batch_size):
            batch = part[start : start + batch_size]
            images = [rgb_tensor(_reference_image(value, settings), device) for value in batch[settings.image_column]]
            embeddings.append(clip.embed_images(images).cpu())
        labels += [mapped[i] for i in keep]
    if not labels:
        raise QualityError(f"reference {settings.dataset!r} has no image of the classes {class_names}")
    return Reference(settings.dataset, torch.cat(embeddings), np.asarray(labels))


def _reference_image(value: dict, settings: ReferenceSettings):
    try:
        return decode_image(value)
    except ImageError as err:
        raise QualityError(f"reference {settings.dataset!r}: {err}") from None


def photos_in_reference(settings: ReferenceSettings, class_names: list[str], hashes: Collection[str]) -> set[str]:
    """Which of ``hashes`` (the reference photos a guided dataset's images started from: real-image guidance) the
    reference dataset holds, by its image files' SHA-256: CMMD to such a reference is measured against the photos
    the images were made from."""
    parts, _ = open_reference(settings, class_names)
    return {sha for part in parts for _, sha in image_hashes(part, settings.image_column) if sha in hashes}


def open_reference(settings: ReferenceSettings, class_names: list[str]) -> tuple[list[datasets.Dataset], list[int]]:
    """The reference's splits to use and our class index of each of its labels (-1: not ours), checked: every
    row's image header and label are read (no image is decoded), so a bad reference is reported before any work."""
    try:
        loaded = datasets.load_dataset(settings.dataset)
    except Exception as err:  # noqa: BLE001 - any loading failure is reported with the dataset's name
        raise QualityError(f"reference {settings.dataset!r} cannot be loaded: {err}") from None
    if settings.split is not None and settings.split not in loaded:
        raise QualityError(f"reference {settings.dataset!r} has no split {settings.split!r} (splits: {list(loaded)})")
    names = [settings.split] if settings.split else list(loaded)
    lookup = _reference_labels(loaded[names[0]], settings, class_names)
    columns = SplitColumns(settings.image_column, settings.label_column, len(lookup), unlabelled=True)
    for name in names:  # every image's header and label: a bad reference fails here, before any scoring
        try:
            check_split(loaded[name], name, columns, f"reference {settings.dataset!r}")
        except DatasetRowsError as err:
            raise QualityError(str(err)) from None
    return [loaded[name] for name in names], lookup


def _reference_labels(part: datasets.Dataset, settings: ReferenceSettings, class_names: list[str]) -> list[int]:
    """Our class index for each of the reference's label indices (-1: not one of ours, left out)."""
    image, label = part.features.get(settings.image_column), part.features.get(settings.label_column)
    if not isinstance(image, datasets.Image) or not isinstance(label, datasets.ClassLabel):
        raise QualityError(
            f"reference {settings.dataset!r}: needs an Image column {settings.image_column!r} and a ClassLabel "
            f"column {settings.label_column!r} (columns: {part.column_names})"
        )
    unknown = sorted(set(settings.label_map.values()) - set(class_names))
    if unknown:
        raise QualityError(f"reference label map: {unknown} are not classes of the dataset ({class_names})")
    ours = [settings.label_map.get(name, name) for name in label.names]
    lookup = [class_names.index(name) if name in class_names else -1 for name in ours]
    if all(i < 0 for i in lookup):
        raise QualityError(
            f"reference {settings.dataset!r}: none of its classes {label.names[:10]} is one of ours {class_names}; "
            "map them with a label map (THEIRS=OURS)"
        )
    left_out = [name for name, i in zip(label.names, lookup) if i < 0]
    if left_out:
        log.info(
            "reference %s: %d classes are not ours and are left out: %s", settings.dataset, len(left_out), left_out[:10]
        )
    return lookup


# -- the whole pass ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Projection:
    """A 2-D principal-component projection of (a sample of) the embeddings, for the picture."""

    points: np.ndarray  # (m, 2)
    labels: np.ndarray
    splits: list[str]
    explained: tuple[float, float]  # share of the variance along each axis


@dataclass
class QualityReport:
    """What the pass found: the summary's sections, the pairs, the ids the duplicate filter drops."""

    duplicates: dict
    per_class: dict[tuple[str, str], dict]  # (split, class) -> duplicates, diversity, cmmd
    pairs: list[Pair]
    ids: list[str]
    drop_ids: set[str] = field(default_factory=set)
    cmmd: dict | None = None
    projection: Projection | None = None

    def drop_array(self) -> pa.Array:
        """The ids ``filters.drop_duplicates`` drops, as ``eval.filters.keep_mask`` takes them."""
        return pa.array(sorted(self.drop_ids), pa.string())

    def pairs_table(self) -> pa.Table:
        return pa.table(
            {
                "id_a": [self.ids[p.a] for p in self.pairs],
                "id_b": [self.ids[p.b] for p in self.pairs],
                "similarity": [p.similarity for p in self.pairs],
                "kind": [p.kind for p in self.pairs],
                "across_splits": [p.across_splits for p in self.pairs],
            },
            schema=PAIRS_SCHEMA,
        )

    def write_pairs(self, root: Path) -> Path:
        """``duplicates.parquet`` at the dataset's root (beside data/, so load_dataset never reads it as a split)."""
        path = Path(root) / PAIRS_FILE
        pq.write_table(self.pairs_table(), path)
        return path


@dataclass
class Samples:
    """Rows whose embeddings the pass keeps while it streams the classes: fixed-seed samples of at most
    ``CMMD_SAMPLE`` rows of the dataset and of each split (for CMMD, with a reference), and at most
    ``PICTURE_POINTS`` evenly spaced rows for the picture (``PROJECTION_POINTS`` per split and class at most,
    fewer when there are many, so a big class does not hide a small one)."""

    overall: np.ndarray
    per_split: dict[str, np.ndarray]
    picture: np.ndarray
    wanted: np.ndarray  # every row above, sorted
    vectors: np.ndarray | None = None  # (len(wanted), width), filled class by class

    @classmethod
    def choose(cls, rows: Rows, with_cmmd: bool) -> Samples:
        splits, labels, classes = rows.split_array, rows.label_array, len(rows.class_names)
        split_index = {split: i for i, split in enumerate(rows.split_order)}
        keys = np.asarray([split_index[s] for s in rows.splits], dtype=np.int64) * classes + labels
        groups = [members for members in groups_of(keys, len(split_index) * classes) if len(members)]
        per_group = max(1, min(PROJECTION_POINTS, PICTURE_POINTS // max(len(groups), 1)))
        picture = np.concatenate([m[:: max(1, math.ceil(len(m) / per_group))] for m in groups] or [[]]).astype(int)
        overall, per_split = np.empty(0, dtype=int), {}
        if with_cmmd:
            overall = fixed_sample(len(splits), CMMD_SAMPLE)
            for split, members in zip(rows.split_order, groups_of(keys // classes, len(split_index))):
                per_split[split] = members[fixed_sample(len(members), CMMD_SAMPLE)]
        wanted = np.unique(np.concatenate([overall, picture, *per_split.values()]).astype(int))
        return cls(overall, per_split, picture, wanted)

    def gather(self, members: np.ndarray, x: torch.Tensor) -> None:
        """Keep the sampled rows among one class's (``members``, embeddings ``x``)."""
        if self.vectors is None:
            self.vectors = np.zeros((len(self.wanted), x.shape[1]), dtype=np.float32)
        chosen = np.isin(members, self.wanted)
        self.vectors[np.searchsorted(self.wanted, members[chosen])] = x[torch.from_numpy(chosen)].numpy()

    def of(self, indices: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.vectors[np.searchsorted(self.wanted, indices)])


def assess(
    rows: Rows,
    settings: QualitySettings,
    device: torch.device,
    drop_duplicates: str = "none",
    reference: Reference | None = None,
) -> QualityReport:
    """Duplicates, leakage, diversity (and CMMD to ``reference``) of ``rows``, one class at a time (only one
    class's embeddings are loaded at once); with ``drop_duplicates`` (``exact`` or ``near``) also the ids that
    filter drops."""
    near = rows.embeddings is not None
    threshold = settings.near_duplicate_threshold
    splits, labels = rows.split_array, rows.label_array
    samples = Samples.choose(rows, reference is not None) if near else None
    pairs, drops, searches, measures = [], [], {}, {}
    for (label, name), members in zip(enumerate(rows.class_names), rows.by_class()):
        x = rows.embeddings.of_class(label) if near else None
        search = ClassSearch.of_class(name, x, settings.exact_search_limit, device) if near else None
        searches[name] = search
        pairs += class_pairs(rows, members, x, search, threshold)
        if drop_duplicates != "none":
            drops.append(class_drops(members, x, rows, drop_duplicates, search, threshold))
        if near:
            samples.gather(members, x)
            for split in rows.split_order:
                mine = take(x, np.flatnonzero(splits[members] == split))
                measures[(split, name)] = {"diversity": diversity(mine)}
                if reference is not None:
                    measures[(split, name)]["cmmd"] = _class_cmmd(mine, reference, label, device)
    duplicates = duplicate_counts(pairs, near, threshold)
    if near:
        duplicates["near_search"] = near_search_summary(searches, settings.exact_search_limit)
    report = QualityReport(
        duplicates=duplicates,
        per_class=_per_class(rows, pairs, measures, near, threshold),
        pairs=pairs,
        ids=rows.ids,
        projection=project(samples.of(samples.picture), labels[samples.picture], splits[samples.picture].tolist())
        if near
        else None,
    )
    if drop_duplicates != "none":
        report.drop_ids = {rows.ids[j] for j in np.concatenate(drops or [np.empty(0, dtype=int)])}
    if reference is not None:
        report.cmmd = _cmmd_report(samples, reference, device)
    return report


def _per_class(rows: Rows, pairs: list[Pair], measures: dict, near: bool, threshold: float) -> dict:
    """Each (split, class)'s duplicate counts, with its diversity and CMMD where measured. Sorts ``pairs`` in
    place (by later row, within-split first), the order the report lists them in."""
    pairs.sort(key=lambda p: (p.b, p.across_splits))
    pairs_of: dict[tuple[str, int], list[Pair]] = {}
    for pair in pairs:
        pairs_of.setdefault((rows.splits[pair.b], rows.labels[pair.b]), []).append(pair)
    return {
        (split, name): {"duplicates": duplicate_counts(pairs_of.get((split, label), []), near, threshold)}
        | measures.get((split, name), {})
        for split in rows.split_order
        for label, name in enumerate(rows.class_names)
    }


def _cmmd_report(samples: Samples, reference: Reference, device: torch.device) -> dict:
    """CMMD of the sampled rows to ``reference``: overall and per split, with the settings it was measured at."""
    return {
        "reference": reference.name,
        "reference_images": len(reference.labels),
        "overall": cmmd(samples.of(samples.overall), reference.embeddings, device),
        "per_split": {
            split: cmmd(samples.of(chosen), reference.embeddings, device) for split, chosen in samples.per_split.items()
        },
        "sigma": CMMD_SIGMA,
        "sample": CMMD_SAMPLE,
    }


def _class_cmmd(embeddings: torch.Tensor, reference: Reference, label: int, device) -> float | None:
    theirs = reference.embeddings[np.flatnonzero(reference.labels == label)]
    return cmmd(embeddings, theirs, device) if len(embeddings) and len(theirs) else None


def project(x: torch.Tensor, labels: np.ndarray, splits: list[str]) -> Projection:
    """The first two principal components of the embeddings ``x`` (rows of ``labels`` and ``splits``)."""
    x = x.double().numpy()
    x = x - x.mean(axis=0)
    _, singular, vt = np.linalg.svd(x, full_matrices=False)
    variance = singular**2 / max((singular**2).sum(), 1e-30)
    axes = vt[:2] if len(vt) >= 2 else np.vstack([vt, np.zeros_like(vt)])
    shares = (float(variance[0]) if len(variance) else 0.0, float(variance[1]) if len(variance) > 1 else 0.0)
    return Projection(x @ axes.T, labels, splits, shares)


def quality_pass(
    parts: Sequence[tuple[str, Path]],
    settings: QualitySettings,
    clip_model: str | None,
    dtype_name: str = "auto",
    filters=None,
    label_column: str = LABEL,
) -> QualityReport:
    """The whole pass over ``parts`` ((split, Parquet file) in row order), on the GPU when there is one.
    ``filters`` (a ``FilterSettings``): its score rules decide which rows may stay, its ``drop_duplicates``
    which repeats go. A reference that cannot be used is reported in the summary (``cmmd.error``) and logged,
    never fatal: the dataset is already made."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows = read_rows(parts, label_column, filters)
    reference, problem = None, None
    if settings.reference is not None:
        dtype = getattr(torch, choose_dtype(dtype_name, device.type))
        try:
            if rows.embeddings is None or clip_model is None:
                raise QualityError(f"the dataset has no {EMBEDDING} column to compare with the reference")
            reference = load_reference(settings.reference, rows.class_names, clip_model, device, dtype)
        except QualityError as err:
            log.error("CMMD not measured: %s", err)
            problem = str(err)
    drop = filters.drop_duplicates if filters is not None else "none"
    report = assess(rows, settings, device, drop, reference)
    if problem:
        report.cmmd = {"reference": settings.reference.dataset, "error": problem}
    return report
