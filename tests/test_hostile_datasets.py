"""Datasets from elsewhere, handed to ``python -m eval`` and ``python -m training``: every bad row is named (split,
row, what is wrong) with exit 2 before any model loads; the pixel bound holds wherever images are decoded.

The datasets are real Parquet files read by ``load_dataset``, written with pyarrow so that they can hold what a
``datasets`` writer would refuse (labels outside the class list)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from eval.quality import pixel_hash
from eval.standalone import main as eval_main
from synthcore.images import MAX_IMAGE_PIXELS, ImageError, SplitColumns, check_split, decode_image
from training.__main__ import main as training_main
from training.config import TrainConfig, TrainingError
from training.data import class_names

CLASSES = ["cat", "dog"]


def png(size=(16, 16), colour=(10, 20, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def declared_png(width: int, height: int) -> bytes:
    """A few hundred bytes whose PNG header declares ``width`` x ``height`` pixels (no pixel data to match)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


GOOD = png()
BAD_IMAGES = {
    "no image": (b"<html>not found</html>", "not an image Pillow can read"),
    "0x0 PNG": (declared_png(0, 0), "not an image Pillow can read"),
    "13000x13000 PNG": (declared_png(13000, 13000), f"over the bound of {MAX_IMAGE_PIXELS:,} pixels"),
    "9000x9000 PNG": (declared_png(9000, 9000), "9000x9000 = 81,000,000 pixels, over the bound"),
}


def write_dataset(root: Path, splits: dict[str, list[tuple[bytes, int | None]]]) -> Path:
    """``root/data/<split>-00000-of-00001.parquet`` holding (image bytes, label) rows, as given."""
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=CLASSES)})
    (root / "data").mkdir(parents=True)
    for split, rows in splits.items():
        images = [{"bytes": data, "path": None} for data, _ in rows]
        table = pa.table({"image": images, "label": [label for _, label in rows]}, schema=features.arrow_schema)
        pq.write_table(table, root / "data" / f"{split}-00000-of-00001.parquet")
    return root


def eval_exit(dataset: Path, tmp_path: Path, capsys) -> tuple[int, str]:
    code = eval_main([str(dataset), "--output-dir", str(tmp_path / "scored"), "--no-clip", "--no-resnet50"])
    return code, capsys.readouterr().err


def training_exit(dataset: Path, tmp_path: Path, capsys) -> tuple[int, str]:
    out = tmp_path / "trained"
    code = training_main(["--dataset", str(dataset), "--output-dir", str(out), "--backbone-weights", "none"])
    assert not out.exists() or not any(out.iterdir())  # nothing written before the data is known good
    return code, capsys.readouterr().err


@pytest.mark.parametrize("case", BAD_IMAGES)
def test_images_that_cannot_be_used_are_named_by_split_and_row(case, tmp_path, capsys):
    data, expected = BAD_IMAGES[case]
    dataset = write_dataset(tmp_path / "d", {"train": [(GOOD, 0), (GOOD, 1), (data, 1)], "test": [(GOOD, 0)]})
    for run in (eval_exit, training_exit):
        code, err = run(dataset, tmp_path, capsys)
        assert code == 2, err
        assert "split 'train': 1 of 3 rows cannot be used: row 2: " in err and expected in err
        assert "Traceback" not in err


@pytest.mark.parametrize("label", [2, -1, None])
def test_labels_outside_the_class_list_are_named(label, tmp_path, capsys):
    dataset = write_dataset(tmp_path / "d", {"train": [(GOOD, 0), (GOOD, 1)], "test": [(GOOD, label), (GOOD, 0)]})
    for run in (eval_exit, training_exit):
        code, err = run(dataset, tmp_path, capsys)
        assert code == 2, err
        assert f"split 'test': 1 of 2 rows cannot be used: row 0: label {label} is not a class index (0 to 1)" in err


def test_many_bad_rows_are_counted_and_the_first_named(tmp_path, capsys):
    dataset = write_dataset(tmp_path / "d", {"train": [(GOOD, 0)] + [(b"junk", 1)] * 12})
    code, err = eval_exit(dataset, tmp_path, capsys)
    assert code == 2
    assert "12 of 13 rows cannot be used: row 1: " in err and "row 5: " in err and "(and 7 more)" in err


def test_an_empty_split_is_named(tmp_path, capsys):
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=CLASSES)})
    empty = datasets.Dataset.from_dict({"image": [], "label": []}, features=features)
    config = TrainConfig(dataset="d", output_dir=str(tmp_path / "o"))
    with pytest.raises(TrainingError, match="d: split 'test' has no rows"):
        class_names(empty, config, "d", "test")
    datasets.DatasetDict({"train": empty.add_item({"image": GOOD, "label": 0}), "test": empty}).save_to_disk(
        tmp_path / "d"
    )
    code, err = training_exit(tmp_path / "d", tmp_path, capsys)  # datasets cannot read its own empty split back
    assert code == 2 and "cannot load dataset" in err and "Traceback" not in err


def test_check_split_reads_image_files_by_path_and_allows_unlabelled_rows_where_asked(tmp_path):
    (tmp_path / "ok.png").write_bytes(GOOD)
    (tmp_path / "bad.png").write_bytes(declared_png(20000, 20000))
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=CLASSES)})
    rows = {"image": [str(tmp_path / "ok.png"), str(tmp_path / "bad.png")], "label": [0, -1]}
    dataset = datasets.Dataset.from_dict(rows, features=features)
    check_split(dataset, "real", SplitColumns("image", "label", 2, unlabelled=True), "ref")  # -1: left out unread
    with pytest.raises(ValueError, match=r"ref: split 'real': 1 of 2 rows cannot be used: row 1: label -1"):
        check_split(dataset, "real", SplitColumns("image", "label", 2), "ref")
    dataset = datasets.Dataset.from_dict({**rows, "label": [0, 1]}, features=features)
    with pytest.raises(ValueError, match=r"row 1: an image of more than [\d,]+ pixels, over the bound"):
        check_split(dataset, "real", SplitColumns("image", "label", 2), "ref")


def test_damaged_pixel_data_in_a_dataloader_worker_is_one_line_without_its_traceback(tmp_path, capsys):
    truncated = png((64, 64), (200, 10, 10))[:-40]  # its header passes the rows check; its pixels do not decode
    dataset = write_dataset(tmp_path / "d", {"train": [(GOOD, 0), (GOOD, 1), (truncated, 1)], "test": [(GOOD, 0)]})
    arguments = ["--dataset", str(dataset), "--output-dir", str(tmp_path / "o"), "--backbone-weights", "none"]
    assert training_main([*arguments, "--num-workers", "1"]) == 2
    err = capsys.readouterr().err
    assert "column 'image': an image that does not decode" in err
    assert "Traceback" not in err and "worker process" not in err


def test_damaged_pixel_data_is_an_image_error_wherever_images_are_decoded():
    truncated = png((64, 64))[:-40]
    with pytest.raises(ImageError, match="does not decode"):
        decode_image({"bytes": truncated, "path": None})
    with pytest.raises(ImageError, match="over the bound"):
        pixel_hash(declared_png(13000, 13000))  # the quality pass's decoder is bounded alike
    assert decode_image(GOOD).size == (16, 16)
