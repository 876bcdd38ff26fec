"""``filters.on_fail: regenerate``: rows failing a score threshold are made again from derived seeds during the
build; the other rows are byte-identical to a ``drop`` build's; 1 and 2 processes give the same shards; rows and
build_info.json record the tries, the card says them per class."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from builders.recipe import parse_recipe
from tests.helpers import ACCELERATE, SAME_THREADS, SCALE_RECIPE, build_here, run_build, write_recipe

RECIPE = SCALE_RECIPE.replace("COUNT", "4").replace(
    "scoring: {clip: {enabled: false}, resnet50: {enabled: false}}",
    "scoring: {resnet50: {enabled: false}, clip: {model: tiny-random}}\n"
    "filters: {min_clip_score: 5.8, on_fail: ON_FAIL, max_regenerations: 3}",
)


def shard_rows(out: Path) -> dict[str, dict]:
    """Every finished shard's rows by id (all columns, image bytes included), as the store holds them."""
    files = sorted((out / ".synthdata" / "shards").rglob("*.parquet"))
    table = pa.concat_tables([pq.read_table(f) for f in files])
    return {row["id"]: row for row in table.to_pylist()}


@pytest.fixture(scope="module")
def builds(tmp_path_factory) -> dict[str, Path]:
    """The recipe built with ``drop`` (1 process) and ``regenerate`` (1 and 2 processes)."""
    root = tmp_path_factory.mktemp("regenerate")
    outs = {}
    for name, on_fail, launcher in [
        ("drop", "drop", None),
        ("one", "regenerate", None),
        ("two", "regenerate", [*ACCELERATE, "--num_processes", "2"]),
    ]:
        recipe = write_recipe(root, RECIPE.replace("ON_FAIL", on_fail), f"{name}.yaml")
        outs[name] = root / name
        if launcher:
            run_build(str(recipe), "--output-dir", str(outs[name]), env=SAME_THREADS, launcher=launcher)
        else:  # one process: this one
            build_here(str(recipe), "--output-dir", str(outs[name]), env=SAME_THREADS)
    return outs


@pytest.mark.e2e
def test_failing_rows_are_regenerated_and_the_others_untouched(builds: dict[str, Path]):
    dropped, regenerated = shard_rows(builds["drop"]), shard_rows(builds["one"])
    assert dropped.keys() == regenerated.keys() and len(regenerated) == 12
    assert {row["filter_regenerations"] for row in dropped.values()} == {None}
    tries = {i: row["filter_regenerations"] for i, row in regenerated.items()}
    assert set(tries.values()) <= {0, 1, 2, 3} and any(tries.values())
    for i, row in regenerated.items():
        before = dropped[i] | {"filter_regenerations": row["filter_regenerations"]}
        if tries[i] == 0:
            assert row == before  # passed at once: byte-identical to the drop build's row
            assert row["clip_score"] >= 5.8
        else:
            assert row["seed"] != dropped[i]["seed"] and row["image"] != dropped[i]["image"]
            assert row["clip_score"] >= 5.8 or tries[i] == 3  # kept once it passes; the last try stays
    kept = pa.concat_tables([pq.read_table(f) for f in (builds["one"] / "data").glob("*.parquet")])
    assert min(kept["clip_score"].to_pylist()) >= 5.8
    assert kept.num_rows == sum(r["clip_score"] >= 5.8 for r in regenerated.values())
    assert kept.num_rows > sum(r["clip_score"] >= 5.8 for r in dropped.values())  # regenerating kept more rows


@pytest.mark.e2e
def test_the_report_and_card_count_the_tries_per_class(builds: dict[str, Path]):
    rows = shard_rows(builds["one"])
    info = json.loads((builds["one"] / "build_info.json").read_text())
    expected: dict[str, dict[str, int]] = {}
    for row in rows.values():
        per_class = expected.setdefault(row["id"].split("/")[1], {})
        per_class[str(row["filter_regenerations"])] = per_class.get(str(row["filter_regenerations"]), 0) + 1
    assert {c: dict(sorted(v.items())) for c, v in info["filter_regenerations"].items()} == expected
    card = (builds["one"] / "README.md").read_text(encoding="utf-8")
    assert "failing rows regenerated up to 3 times, then dropped" in card
    assert "filter_regenerations" not in json.loads((builds["drop"] / "build_info.json").read_text())


@pytest.mark.e2e
def test_one_and_two_processes_make_the_same_rows(builds: dict[str, Path]):
    assert shard_rows(builds["two"]) == shard_rows(builds["one"])


def test_regenerate_needs_a_score_threshold_and_bounds_its_tries():
    base = RECIPE.replace("ON_FAIL", "regenerate")
    with pytest.raises(ValueError, match="filters.on_fail: 'regenerate' needs a score threshold"):
        parse_recipe(base.replace("min_clip_score: 5.8, ", ""))
    with pytest.raises(ValueError, match="max_regenerations"):
        parse_recipe(base.replace("max_regenerations: 3", "max_regenerations: 101"))
    assert parse_recipe(base).filters.regeneration() == {"thresholds": {"min_clip_score": 5.8}, "max_regenerations": 3}
    assert parse_recipe(RECIPE.replace("ON_FAIL", "drop")).filters.regeneration() is None
