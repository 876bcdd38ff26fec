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

import eval.quality as quality
from builders.recipe import RecipeError, parse_recipe
from eval.quality import (
    QualitySettings,
    best_earlier,
    cmmd,
    diversity,
    greedy_repeats,
    quality_pass,
    read_rows,
)
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
    assert greedy_repeats(x, np.array([True, True, True]), 0.9, "cpu").tolist() == [False, True, False]
    # a row that is not a candidate (a score filter drops it) neither stays nor removes its copies
    assert greedy_repeats(x, np.array([False, True, True]), 0.9, "cpu").tolist() == [False, False, True]


def test_blocked_search_equals_brute_force(monkeypatch):
    monkeypatch.setattr(quality, "_ROWS", 7)
    monkeypatch.setattr(quality, "_COLUMNS", 5)
    x = torch.nn.functional.normalize(torch.randn(40, 6, generator=torch.Generator().manual_seed(0)), dim=1)
    y = x[:23]
    sims = x @ x.T
    best, where = best_earlier(x, x, causal=True, device="cpu")
    assert where[0] == -1 and best[0] == -np.inf
    for j in range(1, 40):
        assert best[j] == pytest.approx(float(sims[j, :j].max())) and where[j] == int(sims[j, :j].argmax())
    best, where = best_earlier(x, y, causal=False, device="cpu")
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


def test_class_over_the_exact_search_limit_says_near_duplicates_were_not_searched(tmp_path: Path, caplog):
    recipe = handmade_recipe()
    store, plan, _ = write_shards(recipe, tmp_path / "out")
    parts = [(shard.split, store.shard_path(shard)) for shard in plan.shards]
    report = quality_pass(parts, QualitySettings(max_exact_per_class=5), clip_model=None)
    assert report.near_skipped == ["fox", "dog", "여우"]  # 6 images per class over both splits
    assert report.duplicates["near"] is None and report.duplicates["exact"] == {"within_split": 0, "across_splits": 0}
    assert "max_exact_per_class" in caplog.text


def test_rows_are_read_in_order_with_their_embeddings(tmp_path: Path):
    recipe = handmade_recipe()
    store, plan, _ = write_shards(recipe, tmp_path / "out")
    rows = read_rows([(shard.split, store.shard_path(shard)) for shard in plan.shards])
    jobs = [job for shard in plan.shards for job in shard.jobs]
    assert rows.ids == [job.id for job in jobs] and rows.class_names == recipe.class_names
    assert np.allclose(rows.embeddings.numpy(), np.stack([fake_embedding(job) for job in jobs]), atol=1e-6)


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
