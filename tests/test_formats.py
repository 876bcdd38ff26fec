"""ImageFolder and WebDataset exports of hand-made builds, read back with the real readers (torchvision's
``ImageFolder``, datasets' ``imagefolder`` and ``webdataset`` builders, the ``webdataset`` library): the same rows,
each image of the same class and with the same pixels as the Parquet rows."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import datasets
import numpy as np
import pytest
import torchvision
import webdataset as wds
from huggingface_hub import DatasetCard

from builders.export import BUILD_OUTPUT
from builders.formats.base import Progress
from builders.formats.choice import chosen
from builders.formats.command import write_formats
from builders.formats.export import WORK, export_formats
from builders.formats.source import SourceData
from builders.hub import push_dataset, with_push_target
from builders.recipe import RecipeError
from synthcore.outdir import WORK_DIR, OutputDirError, claimed
from tests import handmade, hubserver
from tests.handmade import handmade_recipe, write_shards
from tests.helpers import ROOT

FORMATS = "formats: [parquet, imagefolder, {webdataset: {max_samples: 5}}]\n"
FILTERED = "filters: {min_true_class_prob: 0.5}\n"


def build(root: Path, extra: str = FORMATS):
    """A hand-made build of ``extra``'s recipe at ``root``, exported with its formats as ``build.py`` does."""
    recipe = handmade_recipe(extra)
    store, plan, provenance = write_shards(recipe, root)
    handmade.export(recipe, store, plan, provenance)
    with claimed(root, BUILD_OUTPUT) as owned:
        reports = write_formats(owned, recipe)
    return recipe, reports


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("formats") / "out"
    build(root, FORMATS + FILTERED)
    return root


CACHES = tempfile.TemporaryDirectory(prefix="formats-cache-")  # removed when the tests end


def load(*args, **kwargs) -> datasets.DatasetDict:
    """``load_dataset`` with a cache of its own: the shared one keeps image files' paths from earlier runs' folders."""
    return datasets.load_dataset(*args, cache_dir=tempfile.mkdtemp(dir=CACHES.name), **kwargs)


def parquet_rows(root: Path) -> dict[str, datasets.Dataset]:
    return load(str(root))


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def test_the_filters_kept_rows_are_in_every_format_and_nothing_else(built: Path):
    parquet = parquet_rows(built)
    assert set(parquet) == {"train", "test"} and (built / "dropped").is_dir()  # the dropped rows stay there
    assert {p.name for p in (built / "imagefolder").iterdir() if p.is_dir()} == {"train", "test"}
    for split, rows in parquet.items():
        folder = built / "imagefolder" / split
        images = sorted(p.relative_to(folder) for p in folder.glob("*/*"))
        assert len(images) == rows.num_rows
        assert sorted(Path(f"{row['id'].split('/')[1]}/{row['id'].split('/')[2]}.png") for row in rows) == images
        shards = sorted(glob.glob(str(built / "webdataset" / split / f"{split}-*.tar")))
        assert sum(1 for _ in wds.WebDataset(shards, shardshuffle=False)) == rows.num_rows


def test_torchvision_imagefolder_reads_every_image_with_its_class_and_pixels(built: Path):
    classes = json.loads((built / "imagefolder" / "classes.json").read_text(encoding="utf-8"))
    assert classes["classes"] == ["fox", "dog", "여우"]
    for split, rows in parquet_rows(built).items():
        folder = torchvision.datasets.ImageFolder(str(built / "imagefolder" / split))
        assert split != "test" or "여우" in folder.classes  # a Korean class name is a folder name like any other
        assert folder.classes == classes["imagefolder_classes"][split] == sorted(folder.classes)
        by_id = {row["id"]: row for row in rows}
        assert len(folder) == len(by_id)
        for (path, index), (image, _) in zip(folder.samples, folder):
            row = by_id[f"{split.removesuffix('_dropped')}/{Path(path).parent.name}/{Path(path).stem}"]
            assert classes["imagefolder_to_label"][split][index] == row["label"]
            assert np.array_equal(pixels(image), pixels(row["image"]))


def test_load_dataset_reads_the_imagefolder_export_with_every_column(built: Path):
    parquet = parquet_rows(built)
    for loaded in (
        load("imagefolder", data_dir=str(built / "imagefolder")),
        load(str(built / "imagefolder")),  # its README: label a ClassLabel in our order
    ):
        assert set(loaded) == set(parquet)
        for split, rows in parquet.items():
            theirs = sorted(loaded[split], key=lambda row: row["id"])
            ours = sorted(rows, key=lambda row: row["id"])
            assert [{k: v for k, v in r.items() if k != "image"} for r in theirs] == [
                {k: v for k, v in r.items() if k != "image"} for r in ours
            ]
            assert all(np.array_equal(pixels(a["image"]), pixels(b["image"])) for a, b in zip(theirs, ours))
    assert load(str(built / "imagefolder"))["train"].features == parquet["train"].features


def test_the_webdataset_shards_are_read_by_the_library_and_by_load_dataset(built: Path):
    parquet = parquet_rows(built)
    loaded = load(str(built / "webdataset"))  # the webdataset builder, with the README's types
    for split, rows in parquet.items():
        shards = sorted(glob.glob(str(built / "webdataset" / split / f"{split}-*.tar")))
        assert len(shards) == -(-rows.num_rows // 5)  # max_samples: 5
        samples = list(wds.WebDataset(shards, shardshuffle=False).decode("pil").to_tuple("png", "cls", "json"))
        for (image, label, others), row, theirs in zip(samples, rows, loaded[split]):
            assert (label, others["id"], theirs["cls"], theirs["json"]["id"]) == (row["label"], row["id"]) * 2
            assert others == {k: v for k, v in row.items() if k not in ("image", "label")}
            assert np.array_equal(pixels(image), pixels(row["image"]))
            assert np.array_equal(pixels(theirs["png"]), pixels(row["image"]))


def test_dropped_splits_of_data_are_splits_of_the_formats_too(tmp_path: Path):
    """``filters.dropped: split``: ``<split>_dropped`` is in data/, so in the formats. ``load_dataset("imagefolder",
    data_dir=...)`` would fold ``train_dropped`` into ``train`` (datasets' split names from folder names): the
    folder's README names the splits, and ``load_dataset`` on the folder reads them apart."""
    root = tmp_path / "out"
    build(root, FORMATS + "filters: {min_true_class_prob: 0.5, dropped: split}\n")
    loaded, parquet = load(str(root / "imagefolder")), parquet_rows(root)
    assert {split: rows.num_rows for split, rows in loaded.items()} == {s: r.num_rows for s, r in parquet.items()}
    assert len(parquet) == 4 and sorted(loaded["train_dropped"]["id"]) == sorted(parquet["train_dropped"]["id"])


def test_webdataset_shards_by_bytes(tmp_path: Path):
    build(tmp_path / "out", "formats: [{webdataset: {max_samples: 100, max_bytes: 12000}}]\n")  # a sample: ~4 KiB
    shards = sorted((tmp_path / "out" / "webdataset" / "train").glob("*.tar"))
    assert len(shards) == 6 and all(shard.stat().st_size <= 12000 for shard in shards)
    assert sum(1 for _ in wds.WebDataset([str(s) for s in shards], shardshuffle=False)) == 12


def test_the_exercise_linear_probe_trains_on_the_imagefolder_export(built: Path):
    """The exercise's own code, unchanged (tests/exercise_day07.py), on the export's train split."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "exercise_day07.py"), str(built / "imagefolder" / "train")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    classes = json.loads((built / "imagefolder" / "classes.json").read_text(encoding="utf-8"))
    assert report["classes"] == classes["imagefolder_classes"]["train"]
    assert report["images"] == parquet_rows(built)["train"].num_rows
    assert report["steps"] > 0 and np.isfinite(report["loss"])


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_an_interrupted_export_finishes_on_rerun_with_nothing_written_twice_or_half(tmp_path: Path, monkeypatch):
    recipe, _ = build(tmp_path / "clean")
    expected = {name: _tree(tmp_path / "clean" / name) for name in ("imagefolder", "webdataset")}
    root = tmp_path / "interrupted"
    build(root, "")  # parquet only
    source, record = SourceData.at(root), Progress.record

    def interrupted_after_two(progress: Progress, entry: dict) -> None:
        record(progress, entry)
        if len(progress.done) == 2:  # Ctrl-C once two units are done
            raise KeyboardInterrupt

    for choice in recipe.formats[1:]:
        monkeypatch.setattr(Progress, "record", interrupted_after_two)
        with pytest.raises(KeyboardInterrupt), claimed(root, BUILD_OUTPUT) as owned:
            export_formats(owned, source, [choice])
        monkeypatch.undo()
        assert not (root / choice.format.folder).exists()  # nothing published
        partial = root / WORK_DIR / WORK / f"partial-{choice.format.folder}"
        assert len((partial / "progress.jsonl").read_text().splitlines()) == 2
        # and a unit half-written, as a kill leaves it: the next shard, or an image of a file not recorded done
        half = partial / "webdataset" / "test" / "test-000002.tar"
        if choice.name == "imagefolder":
            half = partial / "imagefolder" / "test" / "여우" / "000000.png"  # of the third file of test
        half.parent.mkdir(exist_ok=True)
        half.write_bytes(b"half")
    with claimed(root, BUILD_OUTPUT) as owned:
        reports = export_formats(owned, source, recipe.formats)
    assert all(report.written for report in reports)
    for name, files in expected.items():
        assert _tree(root / name) == files
    assert not list((root / WORK_DIR / WORK).glob("partial-*"))


def test_a_rerun_on_the_same_data_writes_nothing_and_new_data_replaces_stale_formats(tmp_path: Path):
    root = tmp_path / "out"
    recipe = handmade_recipe(FORMATS)
    store, plan, provenance = write_shards(recipe, root)
    handmade.export(recipe, store, plan, provenance)
    for written in (True, False):  # the second time: the same data, nothing to write
        with claimed(root, BUILD_OUTPUT) as owned:
            assert [bool(r.written) for r in write_formats(owned, recipe)] == [written, written]
    filtered = handmade_recipe(FILTERED + "formats: [imagefolder]\n")  # the same shards under filters: other data
    handmade.export(filtered, store, plan, provenance)
    with claimed(root, BUILD_OUTPUT) as owned:
        write_formats(owned, filtered)
    assert (root / "imagefolder").is_dir() and not (root / "webdataset").exists()  # made for the old data: removed
    assert sum(1 for _ in (root / "imagefolder" / "train").glob("*/*.png")) < 12


def test_a_folder_we_did_not_write_is_never_replaced(tmp_path: Path):
    root = tmp_path / "out"
    recipe, _ = build(root, "")
    (root / "imagefolder").mkdir()
    (root / "imagefolder" / "mine.txt").write_text("mine")
    with claimed(root, BUILD_OUTPUT) as owned, pytest.raises(OutputDirError, match="imagefolder/mine.txt"):
        export_formats(owned, SourceData.at(root), chosen(recipe.formats, "imagefolder"))
    assert (root / "imagefolder" / "mine.txt").read_text() == "mine"


def test_the_card_names_the_formats_and_the_class_order(built: Path):
    card = DatasetCard.load(built / "README.md")
    assert "imagefolder/classes.json" in card.text and "webdataset/<split>/<split>-NNNNNN.tar" in card.text
    assert card.data.configs[0]["data_files"][0]["path"][0].startswith("data/")  # load_dataset reads Parquet


@pytest.mark.parametrize(
    "extra, expected",
    [
        ("formats: [tar]\n", "formats: [0]: unknown format 'tar'"),
        ("formats: [{webdataset: {max_samples: 0}}]\n", "formats: [0].webdataset.max_samples"),
        ("formats: [{webdataset: {shards: 3}}]\n", "formats: [0].webdataset.shards: Extra inputs"),
        ("formats: []\n", "formats: must be a non-empty list"),
        ("hub: {formats: [zip]}\n", "hub.formats: [0]: unknown format 'zip'"),
    ],
)
def test_bad_formats_are_named_with_their_key(extra: str, expected: str):
    with pytest.raises(RecipeError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        handmade_recipe(extra)


def test_export_only_writes_the_formats_of_a_built_dataset_without_a_model(tmp_path: Path):
    root = tmp_path / "out"
    build(root, "")
    result = subprocess.run(
        [sys.executable, str(ROOT / "build.py"), str(root), "--export-only", "--formats", "imagefolder,webdataset"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert sum(1 for _ in (root / "imagefolder" / "train").glob("*/*.png")) == 12
    assert len(list((root / "webdataset" / "train").glob("*.tar"))) == 1
    missing = subprocess.run(
        [sys.executable, str(ROOT / "build.py"), str(tmp_path / "none"), "--export-only"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


def test_a_push_uploads_only_the_formats_hub_formats_asks_for(tmp_path: Path, monkeypatch):
    root = tmp_path / "out"
    recipe, _ = build(root)
    with hubserver.running() as server:
        hubserver.serving(server, monkeypatch)
        push_dataset(root, with_push_target(recipe, "someone/formats", False))
        first = {name.split("/")[0] for name in server.files("someone/formats")}
        assert "data" in first and not first & {"imagefolder", "webdataset"}
        asked = recipe.model_copy(update={"hub": recipe.hub.model_copy(update={"formats": ("imagefolder",)})})
        push_dataset(root, with_push_target(asked, "someone/formats", False))
        pushed = server.files("someone/formats")
    assert {name.split("/")[0] for name in pushed} >= {"data", "imagefolder"} and not any(
        name.startswith("webdataset/") for name in pushed
    )
    assert pushed["imagefolder/train/fox/000000.png"] == (root / "imagefolder/train/fox/000000.png").read_bytes()
    card = DatasetCard(pushed["README.md"].decode())
    assert card.data.configs[0]["data_files"][0]["path"][0].startswith("data/")
    assert "imagefolder/classes.json" in card.text and "webdataset/<split>" not in card.text


@pytest.mark.e2e
def test_training_reads_the_imagefolder_export(tmp_path: Path):
    """``python -m training --dataset <output>/imagefolder``: load_dataset on the folder, our class names."""
    build(tmp_path / "out")
    out = tmp_path / "probe"
    command = [sys.executable, "-m", "training", "--dataset", str(tmp_path / "out" / "imagefolder")]
    command += ["--output-dir", str(out), "--backbone-weights", "none", "--cache-dir", str(tmp_path / "cache")]
    # its own datasets cache: a shared one can hold an earlier (deleted) export's image paths for identical content
    env = {**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "datasets-cache")}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["classes"] == ["fox", "dog", "여우"]
