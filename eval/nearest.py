"""Each row's most similar earlier row, among the unit embeddings of one class: exactly, or with an approximate
index once a class is too big for exact search.

Both searches share one shape: an *index* of rows already seen answers "which stored row is most similar to
each of these queries", and rows are added to it in order, so "earlier" costs nothing extra (a block of
queries is searched against the index, compared exactly among itself, then added).

- ``ExactIndex``: blocked matrix products on the device (``_COLUMNS`` stored rows at a time). The cost grows
  with the square of the rows: fine to ~10^5 rows per class on a GPU, minutes on a CPU.
- ``IvfIndex``: faiss IVF-Flat with inner product (cosine on unit vectors). k-means (fixed seed) splits the
  class's embeddings into about 4 sqrt(n) cells; a query is compared with the rows of the ``PROBES`` cells
  nearest to it, so it can miss an earlier row that fell into another cell. ``Recall`` measures how often.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

PROBES = 16  # cells searched per query
INDEX_SEED = 1234  # k-means seed: the same embeddings give the same cells
MIN_POINTS_PER_CELL = 39  # faiss's minimum of training points per k-means centroid
RECALL_QUERIES = 1000  # sampled rows whose approximate answer is checked against exact search
_ROWS, _COLUMNS = 1024, 8192  # block of similarities computed at once (32 MiB of float32)


class ExactIndex:
    """Stored rows searched exhaustively, in blocks of at most ``_COLUMNS`` rows on ``device``."""

    def __init__(self, device: torch.device | str):
        self.device = device
        self.blocks: list[torch.Tensor] = []

    def __len__(self) -> int:
        return sum(len(b) for b in self.blocks)

    def add(self, rows: torch.Tensor) -> None:
        rows = rows.to(self.device, torch.float32)
        if self.blocks and len(self.blocks[-1]) + len(rows) <= _COLUMNS:
            self.blocks[-1] = torch.cat([self.blocks[-1], rows])
        elif len(rows):
            self.blocks.append(rows)

    def search(self, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each query's highest similarity to a stored row and that row's position (-inf and -1: none);
        the earliest row wins a tie."""
        q = queries.to(self.device, torch.float32)
        best = torch.full((len(q),), -math.inf, device=self.device)
        where = torch.full((len(q),), -1, dtype=torch.long, device=self.device)
        start = 0
        for block in self.blocks:
            value, index = (q @ block.T).max(dim=1)
            better = value > best
            best = torch.where(better, value, best)
            where = torch.where(better, index + start, where)
            start += len(block)
        return best.cpu(), where.cpu()


class IvfIndex:
    """A faiss IVF-Flat inner-product index whose cells were trained once on a class's embeddings; ``empty``
    copies share those cells, so every search of the class probes the same partition."""

    def __init__(self, trained, cells: int):
        self.index = trained
        self.cells = cells

    @classmethod
    def train(cls, embeddings: torch.Tensor) -> IvfIndex:
        """About 4 sqrt(n) cells (at most n / 39, so k-means has the points it needs), seeded k-means."""
        import faiss  # only classes above quality.exact_search_limit need it

        n, width = embeddings.shape
        cells = max(1, min(round(4 * math.sqrt(n)), n // MIN_POINTS_PER_CELL))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(width), width, cells, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = INDEX_SEED
        index.train(_float32(embeddings))
        index.nprobe = min(PROBES, cells)
        return cls(index, cells)

    @property
    def probes(self) -> int:
        return self.index.nprobe

    def empty(self) -> IvfIndex:
        import faiss

        copy = faiss.clone_index(self.index)
        copy.reset()
        return IvfIndex(copy, self.cells)

    def __len__(self) -> int:
        return self.index.ntotal

    def add(self, rows: torch.Tensor) -> None:
        if len(rows):
            self.index.add(_float32(rows))

    def search(self, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not len(self) or not len(queries):
            return torch.full((len(queries),), -math.inf), torch.full((len(queries),), -1, dtype=torch.long)
        similarity, position = self.index.search(_float32(queries), 1)
        found = position[:, 0] >= 0
        best = np.where(found, similarity[:, 0], -np.inf).astype(np.float32)
        return torch.from_numpy(best), torch.from_numpy(position[:, 0].astype(np.int64))


def _float32(rows: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(rows.detach().cpu().numpy(), dtype=np.float32)


def best_earlier(queries: torch.Tensor, index, causal: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """For each query row, its highest cosine similarity to a row of ``index`` and that row's position (-inf
    and -1 when there is none). ``causal``: ``index`` starts empty and the queries are added to it in order,
    so each row is compared with the rows before it (positions are then query positions)."""
    best = torch.full((len(queries),), -math.inf)
    where = torch.full((len(queries),), -1, dtype=torch.long)
    device = getattr(index, "device", "cpu")
    for q0 in range(0, len(queries), _ROWS):
        block = queries[q0 : q0 + _ROWS]
        best[q0 : q0 + len(block)], where[q0 : q0 + len(block)] = index.search(block)
        if not causal:
            continue
        q = block.to(device, torch.float32)
        sims = q @ q.T
        sims.masked_fill_(torch.ones_like(sims, dtype=torch.bool).triu(), -math.inf)  # only earlier rows
        value, inside = (v.cpu() for v in sims.max(dim=1))
        better = value > best[q0 : q0 + len(block)]  # a tie goes to the earlier block's row
        best[q0 : q0 + len(block)] = torch.where(better, value, best[q0 : q0 + len(block)])
        where[q0 : q0 + len(block)] = torch.where(better, inside + q0, where[q0 : q0 + len(block)])
        index.add(block)
    return best, where


def greedy_repeats(embeddings: torch.Tensor, candidates: np.ndarray, threshold: float, index) -> np.ndarray:
    """Rows (in order) that repeat a row kept before them: a candidate row is kept unless its similarity to an
    already kept row reaches ``threshold``. Non-candidates are neither kept nor compared. ``index`` starts
    empty; the kept rows are added to it (exact or approximate, as the class's search)."""
    repeats = np.zeros(len(embeddings), dtype=bool)
    device = getattr(index, "device", "cpu")
    for b0 in range(0, len(embeddings), _ROWS):
        block = embeddings[b0 : b0 + _ROWS]
        dup = (index.search(block)[0] >= threshold).numpy()
        q = block.to(device, torch.float32)
        within = (q @ q.T >= threshold).cpu().numpy()
        keep = []
        for r in range(len(block)):
            if candidates[b0 + r] and not dup[r]:
                keep.append(r)
                dup[r + 1 :] |= within[r, r + 1 :]
        repeats[b0 : b0 + len(block)] = dup & candidates[b0 : b0 + len(block)]
        index.add(block[keep])
    return repeats


@dataclass
class Recall:
    """How well the index answered sampled queries, against exact search.

    ``recall`` (the number that matters): of the sampled queries whose exact best similarity reaches the
    near-duplicate threshold (``queries`` of them), the share whose duplicate the index reported too (``found``).
    ``nearest_recall`` (a diagnostic): of every sampled query with an earlier row (``sampled``), the share whose
    nearest earlier row the index found at any similarity (a row as similar counts: ties, identical embeddings).
    """

    queries: int = 0
    found: int = 0
    sampled: int = 0
    nearest: int = 0

    def add(self, other: Recall) -> None:
        self.queries += other.queries
        self.found += other.found
        self.sampled += other.sampled
        self.nearest += other.nearest

    @property
    def share(self) -> float | None:
        return self.found / self.queries if self.queries else None

    @property
    def nearest_share(self) -> float | None:
        return self.nearest / self.sampled if self.sampled else None

    def summary(self) -> dict:
        return {
            "recall": self.share,
            "queries": self.queries,
            "nearest_recall": self.nearest_share,
            "sampled": self.sampled,
        }


def measure_recall(
    queries: torch.Tensor,
    approximate: torch.Tensor,
    candidates: torch.Tensor,
    limits: np.ndarray,
    threshold: float,
    device: torch.device | str,
) -> Recall:
    """Check the approximate best similarities of ``queries`` against exact search over the first ``limits[i]``
    rows of ``candidates`` (a query without candidates is not counted)."""
    exact = torch.full((len(queries),), -math.inf, device=device)
    q = queries.to(device, torch.float32)
    limit = torch.as_tensor(limits, device=device)[:, None]
    for c0 in range(0, int(limits.max(initial=0)), _COLUMNS):
        c = candidates[c0 : c0 + _COLUMNS].to(device, torch.float32)
        sims = q @ c.T
        sims.masked_fill_(torch.arange(c0, c0 + len(c), device=device)[None, :] >= limit, -math.inf)
        exact = torch.maximum(exact, sims.max(dim=1).values)
    exact = exact.cpu()
    counted = exact > -math.inf
    nearest = approximate >= exact - 1e-5  # faiss and torch round the same product differently
    duplicate = exact >= threshold
    return Recall(
        queries=int(duplicate.sum()),
        found=int((duplicate & (approximate >= threshold)).sum()),
        sampled=int(counted.sum()),
        nearest=int((counted & nearest).sum()),
    )
