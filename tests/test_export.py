"""Export, filters, summary, pictures and card on hand-made shards (fast tier: no model is loaded).

The shards are written exactly as a build writes them (datasets' ParquetWriter, the recipe's features), with
made-up pixels and scores, so everything after generation is exercised in process in about a second.
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from huggingface_hub import DatasetCard

from builders.builder import dataset_features
from builders.export import EmptyDataset
from builders.hub import dataset_problems
from eval.pictures import HISTOGRAM_NAME, samples_name
from synthcore.layout import HUB_FILE, MAX_FILES_PER_FOLDER, DataLayout, hub_file_name, hub_files
from synthcore.readback import tally_files
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


# -- the chunked layout (synthcore.layout): past MAX_FILES_PER_FOLDER files, lowered here to 4 --------------------
def test_file_names_grow_past_99999_files_and_chunks_hold_at_most_the_limit():
    assert hub_file_name("train", 7, 12) == "train-00007-of-00012.parquet"  # today's names, unchanged
    assert hub_file_name("train", 99_999, 100_000) == "train-099999-of-100000.parquet"
    layout = DataLayout({"train": 250_000, "test": 3}, max_files=MAX_FILES_PER_FOLDER)
    assert layout.chunked and layout.path("train", 123_456) == "train/00012/train-123456-of-250000.parquet"
    assert layout.path("test", 2) == "test/00000/test-00002-of-00003.parquet"
    assert not DataLayout({"train": 9_000, "test": 1_000}).chunked  # 10,000 files in all: flat
    for name in ("train-123456-of-250000.parquet", "train-00002-of-00003.parquet"):
        assert HUB_FILE.match(name)["split"] == "train"


@pytest.mark.parametrize("extra", ["", "filters: {min_true_class_prob: 0.5, dropped: split}\n"])
def test_a_chunked_export_is_read_whole_by_load_dataset(tmp_path: Path, extra: str):
    recipe = handmade_recipe(extra)
    store, plan, provenance = write_shards(recipe, tmp_path / "out")
    result = handmade.export(recipe, store, plan, provenance, max_files=4)
    root = store.root
    files = sorted(p.relative_to(root / "data").as_posix() for p in (root / "data").rglob("*.parquet"))
    assert not [f for f in files if "/" not in f]  # nothing flat: every split in its folder
    folders = {f.rsplit("/", 1)[0] for f in files}
    assert all(sum(f.startswith(folder + "/") for f in files) <= 4 for folder in folders)
    if not extra:
        assert "train/00001/train-00004-of-00006.parquet" in files and len(files) == 9
    loaded = datasets.load_dataset(str(root))  # in the card's patterns, every split, every row, in order
    kept = {split: ds["id"][:] for split, ds in loaded.items() if not split.endswith("_dropped")}
    aside = {split.removesuffix("_dropped"): ds["id"][:] for split, ds in loaded.items() if split.endswith("_dropped")}
    for split, ids in all_ids(plan).items():
        assert sorted(kept.get(split, []) + aside.get(split, [])) == sorted(ids)
        assert kept[split] == [i for i in ids if i in set(kept[split])]  # plan order
    assert result.rows == {split: ds.num_rows for split, ds in loaded.items()}
    assert dataset_problems(root, recipe) == []
    assert sum(c.generated for c in result.summary.classes) == 18
    assert (root / samples_name(2)).is_file()


def test_readers_take_both_layouts_in_numeric_order(tmp_path: Path):
    for name in ("a/00001/a-10000-of-10002.parquet", "a/00000/a-09999-of-10002.parquet", "b-00000-of-00001.parquet"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "a" / "00000" / "b-00000-of-00001.parquet").write_bytes(b"")  # another split's name: not a's
    found = {split: [p.relative_to(tmp_path).as_posix() for p in paths] for split, paths in hub_files(tmp_path).items()}
    assert found == {
        "a": ["a/00000/a-09999-of-10002.parquet", "a/00001/a-10000-of-10002.parquet"],
        "b": ["b-00000-of-00001.parquet"],
    }


# -- streaming statistics (synthcore.readback): per-class tallies, file by file ----------------------------------
@pytest.mark.parametrize("values", [[0.1, 0.9], [0.5], list(np.random.default_rng(0).random(999)) + [None, 1.0, 0.0]])
def test_tallied_means_are_exact_and_medians_within_a_thousandth(tmp_path: Path, values: list):
    labels = [i % 2 for i in range(len(values))]
    for part in (0, 1):  # two files: tallies add up
        pq.write_table(
            pa.table({"label": labels[part::2], "p": pa.array(values[part::2], pa.float32())}),
            tmp_path / f"{part}.parquet",
        )
    tally = tally_files(sorted(tmp_path.glob("*.parquet")), 2, ["p"], ["p"], "label")
    for label in (0, 1):
        present = np.array([v for v, y in zip(values, labels) if y == label and v is not None], np.float32)
        assert int(tally.rows[label]) == labels.count(label) and tally.present("p", label) == len(present)
        if len(present):
            assert tally.mean("p", label) == pytest.approx(float(present.astype(np.float64).mean()), rel=1e-12)
            assert abs(tally.median("p", label) - float(np.median(present))) <= 0.001
        else:
            assert tally.mean("p", label) is None and tally.median("p", label) is None
