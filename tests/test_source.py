"""A built dataset (its directory, or its Hub id) stands in for its recipe: build.py rebuilds it from recipe.yaml."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from builders.cli import main
from builders.generators import resolve_family
from builders.recipe import load_recipe
from builders.source import SourceError, recipe_source
from tests.helpers import ROOT, build_here, run_main


@pytest.mark.e2e
def test_rebuild_from_a_dataset_directory_gives_identical_rows_and_image_bytes(smoke_dir: Path, tmp_path: Path):
    rebuilt = tmp_path / "rebuilt"
    result = build_here(str(smoke_dir), "--output-dir", str(rebuilt))
    assert "18 images made, 0 found done" in result.stdout  # generated afresh, nothing reused
    originals = sorted(p.name for p in (smoke_dir / "data").iterdir())
    assert sorted(p.name for p in (rebuilt / "data").iterdir()) == originals
    for name in originals:
        assert pq.read_table(rebuilt / "data" / name).equals(pq.read_table(smoke_dir / "data" / name)), name
    assert load_recipe(rebuilt / "recipe.yaml") == load_recipe(smoke_dir / "recipe.yaml")


@pytest.mark.e2e
def test_a_dataset_directory_is_read_for_its_recipe_without_its_hub_target(smoke_dir: Path, tmp_path: Path):
    published = tmp_path / "published"
    published.mkdir()
    text = (smoke_dir / "recipe.yaml").read_text(encoding="utf-8").replace("repo_id: null", "repo_id: someone/smoke")
    (published / "recipe.yaml").write_text(text, encoding="utf-8")
    source = recipe_source(str(published))
    assert source.dataset_dir == published and source.recipe.hub.repo_id is None
    shipped = resolve_family(load_recipe(ROOT / "recipes" / "smoke.yaml"))  # recipe.yaml records the family's values
    assert source.recipe.model_copy(update={"hub": shipped.hub}) == shipped


def test_a_directory_without_recipe_is_refused(tmp_path: Path):
    with pytest.raises(SourceError, match="has no recipe.yaml"):
        recipe_source(str(tmp_path))


def test_a_hub_id_fetches_only_recipe_yaml_and_fails_clearly_offline(tmp_path: Path):
    result = run_main(main, "someone/some-dataset", "--output-dir", str(tmp_path / "out"))  # HF_HUB_OFFLINE: conftest
    assert result.returncode == 2
    assert (
        "someone/some-dataset: no such recipe file or dataset directory, and cannot fetch recipe.yaml of the "
        "Hub dataset someone/some-dataset" in result.stderr
    )
    assert "HF_HUB_OFFLINE must be unset" in result.stderr
    assert not (tmp_path / "out").exists()
