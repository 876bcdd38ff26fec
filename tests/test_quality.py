"""Is the dataset any good? Duplicates and leakage, the duplicate filter, diversity and CMMD (fast tier: hand-made
shards with planted duplicates, and made-up embeddings; no model is loaded)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

import eval.nearest as nearest
import eval.quality as quality
from builders.recipe import RecipeError, parse_recipe
from eval.nearest import ExactIndex, best_earlier, greedy_repeats
from eval.quality import QualitySettings, cmmd, diversity, quality_pass, read_rows
from tests.handmade import export, fake_embedding, fake_row, handmade_recipe, write_shards

# Planted in the hand-made recipe (train: 4 per class, test: 2 per class; classes fox, dog, 여우):
EXACT = {"train/fox/000001": "train/fox/000000", "test/fox/000000": "train/fox/000002"}  # same pixels
NEAR = {"train/dog/000001": "train/dog/000000", "test/dog/000001": "train/dog/000003"}  # cosine ~0.99
EXPECTED_PAIRS = {
    ("train/fox/000000", "train/fox/000001", "exact", False),
    ("train/fox/000002", "test/fox/000000", "exact", True),
    ("train/dog/000000", "train/dog/000001", "near", False),
    ("train/dog/000003", "test/dog/000001", "near", True),
}


def job_of(plan, job_id: str):
    return next(job for shard in plan.shards for job in shard.jobs if job.id == job_id)


def planted_rows(plan):
    """``fake_row`` with the planted duplicates: a copy takes its original's pixels and embedding (exact), or
    its original's embedding nudged to a cosine of about 0.99 and its own pixels (near)."""

    def make_row(recipe, job):
        row = fake_row(recipe, job)
        if job.id in EXACT:
            original = fake_row(recipe, job_of(plan, EXACT[job.id]))
            row |= {"image": original["image"], "clip_embedding": original["clip_embedding"]}
        if job.id in NEAR:
            original = fake_embedding(job_of(plan, NEAR[job.id]))
            nudged = original + 0.12 * fake_embedding(job)
            row["clip_embedding"] = (nudged / np.linalg.norm(nudged)).tolist()
        return row

    return make_row


def export_planted(tmp_path: Path, extra: str = ""):
    from builders.plan import content_fingerprint, make_plan

    recipe = handmade_recipe(extra)
    plan = make_plan(recipe, content_fingerprint(recipe, "cpu", "float32"))
    store, plan, provenance = write_shards(recipe, tmp_path / "out", planted_rows(plan))
    result = export(recipe, store, plan, provenance)
    return plan, store.root, result


def test_planted_duplicates_are_found_counted_and_listed(tmp_path: Path):
    plan, root, result = export_planted(tmp_path)
    summary = json.loads((root / "summary.json").read_text())
    assert summary["duplicates"] == {
        "exact": {"within_split": 1, "across_splits": 1},
        "near": {"within_split": 1, "across_splits": 1},
        "threshold": 0.95,
        "near_search": {"method": "exact", "exact_search_limit": 100000},
    }
    per_class = {(c["split"], c["class_name"]): c["duplicates"] for c in summary["classes"]}
    assert per_class[("train", "fox")]["exact"] == {"within_split": 1, "across_splits": 0}
    assert per_class[("test", "fox")]["exact"] == {"within_split": 0, "across_splits": 1}
    assert per_class[("train", "dog")]["near"] == {"within_split": 1, "across_splits": 0}
    assert per_class[("test", "dog")]["near"] == {"within_split": 0, "across_splits": 1}
    assert per_class[("train", "여우")] == {
        "exact": {"within_split": 0, "across_splits": 0},
        "near": {"within_split": 0, "across_splits": 0},
        "threshold": 0.95,
    }
    pairs = pq.read_table(root / "duplicates.parquet").to_pylist()
    assert {(p["id_a"], p["id_b"], p["kind"], p["across_splits"]) for p in pairs} == EXPECTED_PAIRS
    assert all(p["similarity"] == pytest.approx(1, abs=1e-5) for p in pairs if p["kind"] == "exact")
    assert all(0.95 <= p["similarity"] < 0.999 for p in pairs if p["kind"] == "near")
    assert result.summary.leaked == {"exact": 1, "near": 1}
    card = (root / "README.md").read_text(encoding="utf-8")
    assert "> **Warning.** LEAKAGE: 2 images" in card and "## Is it any good?" in card
    assert (root / "pictures" / "clip-embeddings.png").is_file()
    assert datasets.load_dataset(str(root))["train"].num_rows == 12  # reported, not filtered


@pytest.mark.parametrize("mode", ["dataset", "split"])
def test_duplicate_filter_drops_the_later_copies_and_loses_nothing(tmp_path: Path, mode: str):
    plan, root, result = export_planted(tmp_path, f"filters: {{drop_duplicates: near, dropped: {mode}}}\n")
    loaded = datasets.load_dataset(str(root))
    aside = (
        datasets.load_dataset(str(root / "dropped"))
        if mode == "dataset"
        else {s.removesuffix("_dropped"): ds for s, ds in loaded.items() if s.endswith("_dropped")}
    )
    dropped = {i for ds in aside.values() for i in ds["id"][:]}
    assert dropped == set(EXACT) | set(NEAR)  # the later copy of each pair; the first stays
    everything = [job.id for shard in plan.shards for job in shard.jobs]
    kept = [i for s, ds in loaded.items() if not s.endswith("_dropped") for i in ds["id"][:]]
    assert sorted(kept + sorted(dropped)) == sorted(everything)  # nothing lost, nothing twice
    assert result.summary.filters == {"drop_duplicates": "near"}
    assert result.summary.duplicates["exact"]["within_split"] == 1  # the report covers every generated image


def test_exact_only_filter_keeps_near_duplicates(tmp_path: Path):
    _, root, _ = export_planted(tmp_path, "filters: {drop_duplicates: exact}\n")
    assert set(datasets.load_dataset(str(root / "dropped"))["train"]["id"][:]) == {"train/fox/000001"}


def test_a_copy_of_a_row_the_score_filters_drop_is_kept(tmp_path: Path):
    """The first of a group that fails a score filter does not take its copy down with it."""
    from builders.plan import content_fingerprint, make_plan

    recipe = handmade_recipe("filters: {min_true_class_prob: 0.5, drop_duplicates: exact}\n")
    plan = make_plan(recipe, content_fingerprint(recipe, "cpu", "float32"))
    planted = planted_rows(plan)

    def make_row(recipe, job):
        return planted(recipe, job) | {"clip_true_prob": 0.1 if job.id == "train/fox/000000" else 0.9}

    store, plan, provenance = write_shards(recipe, tmp_path / "out", make_row)
    export(recipe, store, plan, provenance)
    kept = {i for ds in datasets.load_dataset(str(store.root)).values() for i in ds["id"][:]}
    dropped = {i for ds in datasets.load_dataset(str(store.root / "dropped")).values() for i in ds["id"][:]}
    assert dropped == {"train/fox/000000", "test/fox/000000"}  # the score filter's, and a copy of a kept row
    assert "train/fox/000001" in kept


def test_greedy_keeps_the_first_of_a_chain_and_what_no_kept_row_repeats():
    a = torch.tensor([1.0, 0.0])
    b = torch.nn.functional.normalize(torch.tensor([1.0, 0.35]), dim=0)  # ~0.94 to a at 0.9 threshold: repeats a
    c = torch.nn.functional.normalize(torch.tensor([1.0, 0.75]), dim=0)  # repeats b, not a
    x = torch.stack([a, b, c])
    assert (a @ b) >= 0.9 and (b @ c) >= 0.9 and (a @ c) < 0.9
    assert greedy_repeats(x, np.array([True, True, True]), 0.9, ExactIndex("cpu")).tolist() == [False, True, False]
    # a row that is not a candidate (a score filter drops it) neither stays nor removes its copies
    assert greedy_repeats(x, np.array([False, True, True]), 0.9, ExactIndex("cpu")).tolist() == [False, False, True]


def test_blocked_search_equals_brute_force(monkeypatch):
    monkeypatch.setattr(nearest, "_ROWS", 7)
    monkeypatch.setattr(nearest, "_COLUMNS", 5)
    x = torch.nn.functional.normalize(torch.randn(40, 6, generator=torch.Generator().manual_seed(0)), dim=1)
    y = x[:23]
    sims = x @ x.T
    best, where = best_earlier(x, ExactIndex("cpu"), causal=True)
    assert where[0] == -1 and best[0] == -np.inf
    for j in range(1, 40):
        assert best[j] == pytest.approx(float(sims[j, :j].max())) and where[j] == int(sims[j, :j].argmax())
    candidates = ExactIndex("cpu")
    candidates.add(y)
    best, where = best_earlier(x, candidates, causal=False)
    assert torch.equal(where, (x @ y.T).argmax(dim=1))


def test_cmmd_is_zero_for_a_set_with_itself_and_grows_with_a_shift():
    generator = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(300, 32, generator=generator), dim=1)
    direction = torch.nn.functional.normalize(torch.randn(32, generator=generator), dim=0)
    assert cmmd(x, x) == pytest.approx(0, abs=1e-9)
    distances = [cmmd(x, torch.nn.functional.normalize(x + shift * direction, dim=1)) for shift in (0.1, 0.3, 1, 3)]
    assert all(0 < a < b for a, b in zip(distances, distances[1:])), distances


def test_cmmd_is_the_papers_estimator(monkeypatch):
    """The reference implementation's formula (biased MMD^2, RBF kernel, sigma 10, x 1000), written out naively,
    on sets larger than one block."""
    monkeypatch.setattr(quality, "_ROWS", 64)
    monkeypatch.setattr(quality, "_COLUMNS", 50)
    generator = torch.Generator().manual_seed(1)
    x = torch.nn.functional.normalize(torch.randn(150, 8, generator=generator), dim=1).double()
    y = torch.nn.functional.normalize(torch.randn(90, 8, generator=generator) + 0.5, dim=1).double()

    def k(a, b):
        return torch.exp(-(torch.cdist(a, b) ** 2) / (2 * 10**2)).mean()

    assert cmmd(x, y) == pytest.approx(float(1000 * (k(x, x) + k(y, y) - 2 * k(x, y))), rel=1e-5)


def test_diversity_of_identical_and_of_orthogonal_images():
    same = torch.nn.functional.normalize(torch.ones(5, 8), dim=1)
    assert diversity(same) == {
        "images": 5,
        "mean_cosine_distance": pytest.approx(0, abs=1e-6),
        "vendi": pytest.approx(1),
    }
    orthogonal = torch.eye(6)
    assert diversity(orthogonal) == {"images": 6, "mean_cosine_distance": pytest.approx(1), "vendi": pytest.approx(6)}
    assert diversity(orthogonal[:1])["vendi"] is None


def png(pixels: np.ndarray, mode: str = "RGB") -> dict:
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode).save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


def test_any_dataset_rows_without_ids_and_pixels_compared_decoded(tmp_path: Path):
    """A dataset made elsewhere (no id column, no embeddings): rows are named <split>/<row index>, and two
    encodings of the same pixels (PNG levels) are one image."""
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(a).save(buffer, format="PNG", compress_level=0)
    recompressed = {"bytes": buffer.getvalue(), "path": None}
    assert recompressed["bytes"] != png(a)["bytes"]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["cat", "dog"])})
    parts = []
    for split, images in (("train", [png(a), png(b), png(b)]), ("test", [recompressed, png(b)])):
        path = tmp_path / f"{split}.parquet"
        datasets.Dataset.from_dict({"image": images, "label": [0] * len(images)}, features=features).to_parquet(path)
        parts.append((split, path))
    report = quality_pass(parts, QualitySettings(), clip_model=None)
    pairs = {(report.ids[p.a], report.ids[p.b], p.kind, p.across_splits) for p in report.pairs}
    assert pairs == {
        ("train/1", "train/2", "exact", False),
        ("train/0", "test/0", "exact", True),
        ("train/1", "test/1", "exact", True),
    }
    assert report.duplicates["near"] is None  # no embeddings: near-duplicates not measured
    assert report.pairs_table().column("similarity").null_count == 3


def test_classes_over_the_exact_search_limit_are_searched_with_an_index(tmp_path: Path):
    """The planted duplicates found through the faiss index (6 images a class: one cell, so every answer is exact
    and the recall 1), the summary and card saying so."""
    _, root, result = export_planted(tmp_path, "quality: {exact_search_limit: 5}\nfilters: {drop_duplicates: near}\n")
    pairs = pq.read_table(root / "duplicates.parquet").to_pylist()
    assert {(p["id_a"], p["id_b"], p["kind"], p["across_splits"]) for p in pairs} == EXPECTED_PAIRS
    search = json.loads((root / "summary.json").read_text())["duplicates"]["near_search"]
    assert search["method"] == "faiss-ivf-flat" and search["exact_search_limit"] == 5
    assert list(search["classes"]) == ["fox", "dog", "여우"] and search["recall"] == 1
    assert search["classes"]["dog"] == {
        "images": 6,
        "cells": 1,
        "probes": 1,
        "recall": 1.0,
        "queries": 2,  # the sampled searches with a duplicate (its two repeating rows)
        "nearest_recall": 1.0,
        "sampled": 6,
    }
    dropped = {i for ds in datasets.load_dataset(str(root / "dropped")).values() for i in ds["id"][:]}
    assert dropped == set(EXACT) | set(NEAR)
    assert "searched approximately \\(faiss IVF index\\): recall 1.000" in (root / "README.md").read_text("utf-8")


def clustered_rows(count: int, width: int, planted: int) -> tuple[quality.Rows, set[tuple[int, int]]]:
    """One class of ``count`` rows (first 80% train, then test) of embeddings loosely around 40 centres (cosine
    ~0.5 to their centre, so a row's nearest neighbour can sit in another IVF cell), ``planted`` of them a copy
    of a random earlier row nudged to a cosine of about 0.99; and the planted (earlier, later) pairs."""
    rng = np.random.default_rng(0)
    centres = 0.6 * rng.standard_normal((40, width))
    x = (centres[rng.integers(0, 40, count)] + rng.standard_normal((count, width))) / np.sqrt(width)
    copies = set()
    for later in rng.choice(np.arange(1, count), planted, replace=False):
        earlier = int(rng.integers(0, later))
        x[later] = x[earlier] / np.linalg.norm(x[earlier]) + 0.14 * rng.standard_normal(width) / np.sqrt(width)
        copies.add((earlier, int(later)))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    train = int(count * 0.8)
    rows = quality.Rows(
        class_names=["a"],
        ids=[f"r{i}" for i in range(count)],
        splits=["train"] * train + ["test"] * (count - train),
        labels=[0] * count,
        hashes=[i.to_bytes(4, "big") for i in range(count)],
        eligible=[True] * count,
        embeddings=quality.ClassEmbeddings(width),
    )
    rows.embeddings.append(np.zeros(count, dtype=int), x)
    return rows, copies


def test_the_index_finds_what_exact_search_finds_and_measures_its_recall():
    """3,000 clustered rows over a limit of 100: 76 cells, 16 probed. The planted near-duplicates (within and
    across splits) are found and dropped as exact search finds and drops them; the recall is measured on 1,000
    sampled rows (in their split and against the earlier split)."""
    rows, copies = clustered_rows(3000, 32, 40)
    exact = quality.assess(rows, QualitySettings(), "cpu", drop_duplicates="near")
    approximate = quality.assess(rows, QualitySettings(exact_search_limit=100), "cpu", drop_duplicates="near")
    found = {(p.a, p.b) for p in approximate.pairs}
    assert copies <= {(p.a, p.b) for p in exact.pairs} and copies <= found
    assert approximate.drop_ids == exact.drop_ids
    assert {(p.a, p.b, p.across_splits) for p in approximate.pairs} == {
        (p.a, p.b, p.across_splits) for p in exact.pairs
    }
    search = approximate.duplicates["near_search"]
    sampled = quality.fixed_sample(3000, 1000)
    queries = sum(i not in (0, 2400) for i in sampled) + sum(i >= 2400 for i in sampled)  # test rows: twice
    with_duplicate = sum(p.b in set(sampled) for p in exact.pairs)  # sampled searches (row, scope) with one
    assert search["classes"]["a"] | {"nearest_recall": None} == {
        "images": 3000,
        "cells": 76,
        "probes": 16,
        "recall": 1.0,
        "queries": with_duplicate,
        "nearest_recall": None,
        "sampled": queries,
    }  # fmt: skip  (76 cells: 4 sqrt(3000) = 219 needs more points than 39 per cell)
    assert with_duplicate > 5 and search["recall"] == 1.0
    assert 0.9 < search["nearest_recall"] < 1 and search["nearest_recall"] == search["classes"]["a"]["nearest_recall"]
    assert exact.duplicates["near_search"] == {"method": "exact", "exact_search_limit": 100000}


def test_recall_counts_the_queries_whose_duplicate_was_missed():
    """Recall: of the queries whose exact best similarity reaches the threshold, those the index reported as
    duplicates; the diagnostic: of all queries with an earlier row, those whose nearest row it found at all."""
    x = torch.eye(5)
    x[3] = torch.nn.functional.normalize(torch.tensor([1.0, 0.2, 0, 0, 0]), dim=0)  # a duplicate of row 0 (0.98)
    x[4] = torch.nn.functional.normalize(torch.tensor([0, 1.0, 0.1, 0, 0]), dim=0)  # a duplicate of row 1 (0.995)
    approximate = torch.tensor([-np.inf, 0.0, 0.0, 0.0, float(x[4] @ x[1])])  # rows 1, 2, 4 right; 3 missed
    recall = nearest.measure_recall(x, approximate, x, np.arange(5), 0.95, "cpu")
    assert (recall.queries, recall.found, recall.share) == (2, 1, 0.5)  # rows 3 and 4 have a duplicate: 4 found
    assert (recall.sampled, recall.nearest) == (4, 3)  # row 0 has no earlier row: not a query


def test_cmmd_and_the_picture_use_fixed_samples(monkeypatch, tmp_path: Path):
    monkeypatch.setattr(quality, "CMMD_SAMPLE", 50)
    generator = torch.Generator().manual_seed(2)
    x = torch.nn.functional.normalize(torch.randn(300, 8, generator=generator), dim=1)
    y = torch.nn.functional.normalize(torch.randn(80, 8, generator=generator) + 0.3, dim=1)
    sampled_x, sampled_y = x[quality.fixed_sample(300, 50)], y[quality.fixed_sample(80, 50)]
    assert len(set(quality.fixed_sample(300, 50))) == 50 and cmmd(x, y) == cmmd(sampled_x, sampled_y)
    monkeypatch.setattr(quality, "PICTURE_POINTS", 10)
    rows, _ = clustered_rows(200, 8, 0)
    projection = quality.assess(rows, QualitySettings(), "cpu").projection
    assert len(projection.points) == 10 and projection.splits.count("test") == 5  # 5 per split and class


def test_rows_are_read_in_order_with_their_embeddings(tmp_path: Path):
    recipe = handmade_recipe()
    store, plan, _ = write_shards(recipe, tmp_path / "out")
    rows = read_rows([(shard.split, store.shard_path(shard)) for shard in plan.shards])
    jobs = [job for shard in plan.shards for job in shard.jobs]
    assert rows.ids == [job.id for job in jobs] and rows.class_names == recipe.class_names
    for label in range(len(recipe.class_names)):
        expected = [fake_embedding(job) for job in jobs if job.label == label]
        assert np.allclose(rows.embeddings.of_class(label).numpy(), np.stack(expected), atol=1e-6)


BASE = "name: t\nclasses: {a: {prompts: [x]}}\nsplits: {train: 1}\n"


@pytest.mark.parametrize(
    "settings, expected",
    [
        (
            "scoring: {clip: {embeddings: false}}\nfilters: {drop_duplicates: near}",
            "filters.drop_duplicates: 'near' compares CLIP embeddings",
        ),
        ("scoring: {clip: {enabled: false}}\nquality: {reference: x/y}", "quality.reference: CMMD compares"),
        ("quality: {enabled: false}\nfilters: {drop_duplicates: exact}", "filters.drop_duplicates: needs the quality"),
        ("quality: {reference: ./no/such/photos}", "quality.reference.dataset: local dataset './no/such/photos'"),
        ("quality: {near_duplicate_threshold: 1.5}", "quality.near_duplicate_threshold: Input should be less"),
        ("quality: {max_exact_per_class: 5}", "quality: max_exact_per_class was renamed exact_search_limit"),
    ],
)
def test_quality_settings_are_checked_when_the_recipe_loads(settings: str, expected: str):
    with pytest.raises(RecipeError) as caught:
        parse_recipe(BASE + settings + "\n", "r.yaml")
    assert any(p.startswith(expected) for p in caught.value.problems), caught.value.problems


def test_reference_shorthand_and_defaults():
    recipe = handmade_recipe("quality: {reference: user/photos}\n")
    assert recipe.quality.reference.dataset == "user/photos" and recipe.quality.reference.label_map == {}
    assert recipe.quality.near_duplicate_threshold == 0.95 and recipe.filters.drop_duplicates == "none"


def test_rows_missing_an_embedding_leave_the_embedding_measures_out(tmp_path: Path, caplog):
    recipe = handmade_recipe()
    store, plan, _ = write_shards(
        recipe,
        tmp_path / "out",
        lambda recipe, job: fake_row(recipe, job) | ({"clip_embedding": None} if job.index == 0 else {}),
    )
    report = quality_pass([(s.split, store.shard_path(s)) for s in plan.shards], QualitySettings(), clip_model=None)
    assert report.duplicates["near"] is None and "diversity" not in report.per_class[("train", "fox")]
    assert "have no clip_embedding" in caplog.text
