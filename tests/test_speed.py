"""Speed settings change only speed: the background writer and torch.compile leave the images as they were.

And the benchmark scripts stay runnable: each runs on tiny settings and ends with its headline number.
"""

from __future__ import annotations

import io
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from builders.recipe import load_recipe
from tests.helpers import ROOT, benchmark_headline, build_here

pytestmark = pytest.mark.e2e  # builds, model loads or subprocesses: the end-to-end tier


def stored_rows(path: Path) -> dict[str, list]:
    """Every split's rows as stored, images as their encoded bytes."""
    ds = datasets.load_dataset(str(path)).cast_column("image", datasets.Image(decode=False))
    return {split: ds[split].to_list() for split in ds}


def test_background_writer_gives_the_same_dataset(smoke_dir: Path, tmp_path: Path):
    """The smoke build (background writer) and the same recipe written inline have identical rows and bytes."""
    inline = tmp_path / "inline"
    build_here("recipes/smoke.yaml", "--output-dir", str(inline), "--no-background-writer")
    background_rows, inline_rows = stored_rows(smoke_dir), stored_rows(inline)
    assert sum(len(rows) for rows in inline_rows.values()) == 18
    for split, rows in inline_rows.items():
        for ours, theirs in zip(background_rows[split], rows, strict=True):
            assert {k: ours[k] for k in ("id", "label", "prompt", "seed")} == {
                k: theirs[k] for k in ("id", "label", "prompt", "seed")
            }
            # CPU float rounding can differ in the last bit between two processes (seen in pytest-spawned builds,
            # even at OMP_NUM_THREADS=1): pixels may differ by one level of 255, scores by float rounding.
            a, b = (np.asarray(Image.open(io.BytesIO(row["image"]["bytes"])), dtype=int) for row in (ours, theirs))
            assert np.abs(a - b).max() <= 1
            assert ours["clip_true_prob"] == pytest.approx(theirs["clip_true_prob"], abs=1e-4)


@pytest.fixture(scope="module")
def compiled():
    """The smoke recipe's generator with compile on, at a batch of 4, after its first batch: (recipe, loaded
    generator, the first 7 training jobs, the first batch's images). torch.compile (inductor, C++ kernels built
    with the system gcc) takes about a minute on two cores; both compile tests share this one compilation."""
    from builders.generators import family_of
    from builders.generators.base import to_uint8_hwc
    from builders.plan import Batch, make_plan
    from synthcore.model_refs import Placement

    recipe = load_recipe(ROOT / "recipes" / "smoke.yaml")
    model = recipe.model.model_copy(update={"safety_checker": False, "compile": True})
    generation = recipe.generation.model_copy(update={"batch_size": 4})
    recipe = recipe.model_copy(update={"model": model, "generation": generation})
    jobs = [job for shard in make_plan(recipe, {}).shards_of("train") for job in shard.jobs][:7]
    loaded = family_of(recipe).load(recipe, Placement("cpu", "float32"))
    return recipe, loaded, jobs, to_uint8_hwc(loaded.generate(Batch(tuple(jobs[:4]))).images)


def test_compile_changes_only_speed(compiled):
    """The compiled generator gives the eager images within rounding."""
    from builders.generators import family_of
    from builders.generators.base import to_uint8_hwc
    from builders.plan import Batch
    from synthcore.model_refs import Placement

    recipe, _, jobs, compiled_pixels = compiled
    eager = recipe.model_copy(update={"model": recipe.model.model_copy(update={"compile": False})})
    loaded = family_of(eager).load(eager, Placement("cpu", "float32"))
    eager_pixels = to_uint8_hwc(loaded.generate(Batch(tuple(jobs[:4]))).images)
    assert eager_pixels.shape == compiled_pixels.shape == (4, 32, 32, 3)
    difference = np.abs(eager_pixels.astype(int) - compiled_pixels.astype(int))
    assert difference.max() <= 2, f"compiled images differ by up to {difference.max()} levels of 255"
    assert eager_pixels.std() > 0  # not a blank image on both sides


def test_generation_benchmark_prints_its_headline():
    ratio = benchmark_headline(
        "generation.py", "--steps", "2", "--num-images", "4", "--batch-size", "2", "--size", "32"
    )
    assert 0 < ratio < 10


def test_memory_benchmark_prints_its_headline():
    ratio = benchmark_headline("memory.py", "--images", "2", "4")
    assert 0 < ratio < 10


def test_a_compiled_build_compiles_once_for_tail_batches(compiled):
    """With compile on, a tail batch (3 images of a planned 4) runs padded to the planned shape: the compiled
    UNet and VAE decoder see one shape, so no graph is compiled after the first batch."""
    from torch._dynamo.utils import counters

    from builders.plan import Batch

    _, loaded, jobs, _ = compiled
    graphs = counters["stats"]["unique_graphs"]
    made = loaded.generate(Batch(tuple(jobs[4:7])))
    assert counters["stats"]["unique_graphs"] == graphs, "the tail batch compiled new graphs"
    assert [job.id for job in made.jobs] == [job.id for job in jobs[4:7]] and made.images.shape[0] == 3


def test_scale_benchmark_prints_its_headline():
    seconds = benchmark_headline(
        "scale.py", "--what", "plan", "--sizes", "1000", "10000", "--classes", "100", "--keys-up-to", "10000"
    )
    assert 0 < seconds < 2
