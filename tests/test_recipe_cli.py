"""The recipe as a user meets it on the command line: bad files refused fast with every problem at once, the
prompt partition shown by --dry-run, and prompt-disjoint splits that stay put when a count is raised."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from builders.cli import main
from tests.helpers import build_here, run_main, write_recipe

DISJOINT = """
name: disjoint
model: {id: tiny-random, safety_checker: false}
generation: {num_inference_steps: 2, height: 32, width: 32, batch_size: 2, images_per_prompt: 1}
templates: ["a {style} of a {subject}"]
variables: {style: [watercolor, sketch, photo, oil painting, pencil drawing, photograph]}
classes:
  fox: {variables: {subject: [red fox, arctic fox]}}
  dog: {variables: {subject: [golden retriever, beagle]}}
splits: {train: TRAIN, val: 2, test: 2}
prompt_disjoint: true
prompt_partition: {train: 0.6, val: 0.2, test: 0.2}
output: {shard_size: 2}
scoring: {clip: {enabled: false}, resnet50: {enabled: false}}
"""

# Each level lists the one before ten times: 10^9 values once expanded, from nine short lines.
ALIAS_BOMB = (
    "l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n"
    + "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 9))
    + "seed: *l8\n"
)


def refused(path: Path, out: Path) -> str:
    """build.py's stderr for a recipe it must refuse: exit 2, fast, one message, no traceback, nothing written."""
    start = time.monotonic()
    result = run_main(main, str(path), "--output-dir", str(out))
    assert time.monotonic() - start < 30  # the refusal is immediate (in this process: no imports to wait for)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert not out.exists()
    assert len(result.stderr) < 10_000
    return result.stderr


def test_every_recipe_problem_is_listed_in_one_run(tmp_path: Path):
    path = write_recipe(
        tmp_path,
        'name: "smoke\\n"\n'
        "guidance_scal: 3\ntemplates: ['a {style} {kind}', 'b {style:>2000000000}']\n"
        "variables: {style: [a]}\nclasses: {fox: {}, ｆｏｘ: {prompts: [x]}}\nsplits: {train: 0}\n"
        "generation: {guidance_scale: .inf, height: 20000}\n",
    )
    stderr = refused(path, tmp_path / "out")
    for expected in (
        f"{path}: invalid recipe (9 problems)",
        "name: 'smoke\\n' is not a safe dataset name",
        "guidance_scal: unknown key",
        "classes: class names 'fox', 'ｆｏｘ' are the same name once normalized",
        "splits.train: Input should be greater than 0",
        "generation.guidance_scale: Input should be a finite number",
        "generation.height: Input should be less than or equal to 4096",
        "templates[1]: field '{style:>2000000000}' is not a plain {name} field",
        "templates[0]: variable {kind} is not defined for class 'fox'",
        "templates[0]: variable {kind} is not defined for class 'ｆｏｘ'",
    ):
        assert expected in stderr, (expected, stderr)


@pytest.mark.parametrize(
    "content, expected",
    [
        (None, "the file is larger than 1024 KiB"),  # /dev/zero
        ("name: t\ndescription: café\n".encode("latin-1"), "not UTF-8"),
        (ALIAS_BOMB, "the document expands to more than 200000 values"),
    ],
    ids=["dev-zero", "latin-1", "alias-bomb"],  # the others, and these, in-process: tests/test_yamlfile.py
)
def test_hostile_files_are_refused_with_their_name(tmp_path: Path, content: bytes | str | None, expected: str):
    if content is None:
        path = Path("/dev/zero")
    else:
        path = tmp_path / "r.yaml"
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    stderr = refused(path, tmp_path / "out")
    assert stderr.startswith(f"{path}: invalid recipe") and expected in stderr, stderr[:2000]


def test_dry_run_shows_the_prompt_partition(tmp_path: Path):
    path = write_recipe(tmp_path, DISJOINT.replace("TRAIN", "4"))
    result = run_main(main, str(path), "--dry-run", "--output-dir", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert "prompt-disjoint splits, each class's prompts partitioned in shares train 0.6, val 0.2, test 0.2" in (
        result.stdout
    )
    rows = [line.split() for line in result.stdout.splitlines() if line.startswith(("train ", "val ", "test "))]
    assert [(row[0], row[1], row[-1]) for row in rows] == [
        (split, name, count)
        for split, count in (("train", "4"), ("val", "2"), ("test", "2"))
        for name in ("fox", "dog")
    ]
    assert all(row[2].isdigit() and int(row[2]) >= 1 for row in rows)


def split_rows(out: Path, split: str) -> list[tuple]:
    rows = []
    for file in sorted((out / "data").glob(f"{split}-*.parquet")):
        table = pq.read_table(file, columns=["id", "prompt", "seed", "image"]).to_pylist()
        rows += [(r["id"], r["prompt"], r["seed"], r["image"]["bytes"]) for r in table]
    return rows


@pytest.mark.e2e
def test_raising_the_train_count_leaves_val_and_test_alone(tmp_path: Path):
    out = tmp_path / "out"
    path = write_recipe(tmp_path, DISJOINT.replace("TRAIN", "4"))
    build_here(str(path), "--output-dir", str(out))
    before = {split: split_rows(out, split) for split in ("train", "val", "test")}
    shards = {p.name for p in (out / ".synthdata" / "shards").glob("*.parquet")}
    path = write_recipe(tmp_path, DISJOINT.replace("TRAIN", "8"))
    build_here(str(path), "--output-dir", str(out))  # no --overwrite needed: nothing finished changes
    assert split_rows(out, "val") == before["val"] and split_rows(out, "test") == before["test"]
    assert set(before["train"]) <= set(split_rows(out, "train"))
    assert shards <= {p.name for p in (out / ".synthdata" / "shards").glob("*.parquet")}
    train_prompts = {row[1] for row in split_rows(out, "train")}
    assert not train_prompts & {row[1] for split in ("val", "test") for row in before[split]}
