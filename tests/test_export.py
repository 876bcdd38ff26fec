"""Export, filters, summary, pictures and card on hand-made shards (fast tier: no model is loaded).

The shards are written exactly as a build writes them (datasets' ParquetWriter, the recipe's features), with
made-up pixels and scores, so everything after generation is exercised in process in about a second.
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
from huggingface_hub import DatasetCard

from builders.builder import dataset_features
from builders.export import EmptyDataset
from builders.hub import dataset_problems
from eval.pictures import HISTOGRAM_NAME, samples_name
from tests import handmade
from tests.handmade import handmade_recipe, true_prob, write_shards


def export(tmp_path: Path, extra: str = ""):
    recipe = handmade_recipe(extra)
    store, plan, provenance = write_shards(recipe, tmp_path / "out")
    return recipe, plan, store.root, handmade.export(recipe, store, plan, provenance)


def all_ids(plan) -> dict[str, list[str]]:
    return {split: [job.id for shard in plan.shards_of(split) for job in shard.jobs] for split in plan.splits}


def test_unfiltered_export_is_what_load_dataset_reads(tmp_path: Path):
    recipe, plan, root, result = export(tmp_path)
    loaded = datasets.load_dataset(str(root))
    assert {split: ds["id"][:] for split, ds in loaded.items()} == all_ids(plan)  # every row, in plan order
    assert loaded["train"].features == dataset_features(recipe)
    assert result.rows == {"train": 12, "test": 6}
    card = DatasetCard.load(root / "README.md")
    assert [c["split"] for c in card.data.configs[0]["data_files"]] == ["train", "test"]
    assert (root / samples_name(2)).is_file() and (root / HISTOGRAM_NAME).is_file()
    build_info = json.loads((root / "build_info.json").read_text())
    assert build_info["rows"] == result.rows and build_info["fingerprint"]["seed"] == 0
    assert (root / "recipe.yaml").read_text() == build_info["recipe_yaml"]


def test_summary_counts_and_statistics_per_split_and_class(tmp_path: Path):
    recipe, plan, root, result = export(tmp_path)
    summary = json.loads((root / "summary.json").read_text())
    assert summary == result.summary.to_dict()
    for entry in result.summary.classes:
        jobs = [j for s in plan.shards_of(entry.split) for j in s.jobs if j.class_name == entry.class_name]
        assert (entry.generated, entry.kept, entry.dropped) == (len(jobs), len(jobs), 0)
        mean = sum(true_prob(j) for j in jobs) / len(jobs)
        assert entry.scores["clip_true_prob_mean"] == pytest.approx(mean, rel=1e-5)
        expected = (sum(j.index % 2 == 0 for j in jobs) / len(jobs)) if entry.class_name == "fox" else None
        assert entry.scores["resnet50_agreement"] == (pytest.approx(expected) if expected is not None else None)


@pytest.mark.parametrize("mode", ["dataset", "split"])
def test_filters_keep_and_drop_without_losing_a_row(tmp_path: Path, mode: str):
    recipe, plan, root, result = export(tmp_path, f"filters: {{min_true_class_prob: 0.5, dropped: {mode}}}\n")
    loaded = datasets.load_dataset(str(root))
    dropped = (
        datasets.load_dataset(str(root / "dropped"))
        if mode == "dataset"
        else {split.removesuffix("_dropped"): ds for split, ds in loaded.items() if split.endswith("_dropped")}
    )
    for split, ids in all_ids(plan).items():
        kept, aside = loaded[split], dropped[split]
        assert all(p >= 0.5 for p in kept["clip_true_prob"][:])
        assert all(p < 0.5 for p in aside["clip_true_prob"][:])
        assert sorted(kept["id"][:] + aside["id"][:]) == sorted(ids)  # nothing lost, nothing twice
    summary = result.summary
    assert summary.filters == {"min_true_class_prob": 0.5}
    assert sum(c.kept for c in summary.classes) == sum(ds.num_rows for s, ds in loaded.items() if "_dropped" not in s)


def test_a_class_the_filters_empty_is_reported_and_nothing_left_fails_clearly(tmp_path: Path):
    with pytest.raises(EmptyDataset, match="Nothing was lost"):
        export(tmp_path, "filters: {min_clip_score: 100}\n")
    assert datasets.load_dataset(str(tmp_path / "out" / "dropped"))["train"].num_rows == 12


def test_an_export_is_a_complete_dataset_for_the_push_check(tmp_path: Path):
    recipe, _, root, _ = export(tmp_path)
    assert dataset_problems(root, recipe) == []
    next((root / "data").glob("test-*.parquet")).unlink()
    assert any("files missing" in p for p in dataset_problems(root, recipe))
