"""Real-image guidance, without a model: reference sets are checked, hashed and pinned when the recipe loads (every
bad input a recipe error naming its key, before any model loads), each image's reference comes from its identity
alone, the references' hashes are in the shard keys (replacing one file changes exactly the shards made from it),
and a recipe without references keeps its fingerprint and keys."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from builders.cli import main
from builders.generators import resolve_family
from builders.plan import content_fingerprint, make_plan
from builders.recipe import RecipeError, load_recipe, parse_recipe, recipe_to_yaml
from builders.references import start_image
from builders.rows import REFERENCE_FEATURES
from tests.helpers import SCALE_RECIPE, run_main, write_recipe

RECIPE = """
name: guided
model: {{id: {model}, safety_checker: false}}
generation: {{num_inference_steps: 4, height: 32, width: 32, batch_size: 2, images_per_prompt: 1}}
classes:
  fox: {{prompts: [a fox], reference_images: {fox}}}
  dog: {{prompts: [a dog]{dog}}}
splits: {{train: {count}, test: 2}}
output: {{shard_size: 2}}
scoring: {{clip: {{enabled: false}}, resnet50: {{enabled: false}}}}
"""


def photos(folder: Path, count: int, size: tuple[int, int] = (48, 40)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(zlib.crc32(str(folder).encode()) + size[0])
    paths = [folder / f"photo{i}.png" for i in range(count)]
    for path in paths:
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return paths


def guided(tmp_path: Path, fox: str = "refs/fox", dog: str = "", count: int = 4, model: str = "tiny-random") -> Path:
    return write_recipe(tmp_path, RECIPE.format(model=model, fox=fox, dog=dog, count=count))


def problems(path: Path) -> list[str]:
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)
    return caught.value.problems


def test_a_folder_and_a_list_are_read_hashed_and_pinned(tmp_path: Path):
    fox = photos(tmp_path / "refs" / "fox", 3)
    (tmp_path / "refs" / "fox" / "notes.txt").write_text("ignored")
    dog = photos(tmp_path / "dogs", 2)
    recipe = load_recipe(guided(tmp_path, dog=", reference_images: [dogs/photo1.png, dogs/photo0.png], strength: 0.5"))
    spec = recipe.classes["fox"]
    assert spec.reference_images == str(tmp_path / "refs" / "fox")
    assert spec.reference_sha256 == {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in fox}
    assert recipe.references_of("dog") == sorted((p.name, hashlib.sha256(p.read_bytes()).hexdigest()) for p in dog)
    assert (recipe.strength_of("fox"), recipe.strength_of("dog")) == (0.75, 0.5)
    assert recipe.reference_path("dog", "photo1.png") == dog[1]
    # recipe.yaml records the set: read back (from anywhere) it needs exactly these files
    (tmp_path / "elsewhere").mkdir()
    assert load_recipe(write_recipe(tmp_path / "elsewhere", recipe_to_yaml(recipe))) == recipe


def test_a_rebuild_from_recipe_yaml_names_each_missing_changed_and_new_file(tmp_path: Path):
    fox = photos(tmp_path / "refs" / "fox", 3)
    recipe = load_recipe(guided(tmp_path))
    stored = write_recipe(tmp_path, recipe_to_yaml(recipe), "stored.yaml")
    fox[0].unlink()
    Image.new("RGB", (8, 8)).save(fox[1])
    Image.new("RGB", (8, 8)).save(fox[0].with_name("extra.png"))
    found = problems(stored)
    assert len(found) == 3
    assert found[0].startswith("classes.fox.reference_images: photo0.png (sha256 ") and "is missing" in found[0]
    assert found[1].startswith("classes.fox.reference_images: photo1.png changed")
    assert found[2].startswith("classes.fox.reference_images: extra.png is not among the recorded")
    shutil.rmtree(tmp_path / "refs")
    missing, made_with = problems(stored)
    assert "does not exist" in missing
    assert made_with.startswith("classes.fox.reference_images: the dataset was made with 3 files (photo0.png, photo1")


def bomb(path: Path) -> None:
    """A PNG of a few KB whose header declares 100 megapixels."""
    Image.new("1", (10_000, 10_000)).save(path)


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda d: None, "does not exist; expected a folder of reference images"),
        (lambda d: d.mkdir(parents=True), "holds no image (.png, .jpg, .jpeg, .webp files)"),
        (lambda d: (d.mkdir(parents=True), (d / "a.jpg").write_bytes(b"not a jpeg")), "a.jpg cannot be read as an"),
        (lambda d: (d.mkdir(parents=True), bomb(d / "big.png")), "big.png is 10,000 x 10,000 pixels, over"),
        (
            lambda d: (d.mkdir(parents=True), photos(d.parent, 1), os.symlink(d.parent / "photo0.png", d / "x.png")),
            "x.png is a symlink to",
        ),
    ],
    ids=["missing", "empty", "unreadable", "bomb", "symlink-out"],
)
def test_bad_reference_input_is_one_recipe_error_naming_the_key_and_build_exits_2(make, expected, tmp_path: Path):
    make(tmp_path / "refs" / "fox")
    recipe = guided(tmp_path)
    (found,) = problems(recipe)
    assert found.startswith("classes.fox.reference_images: ") and expected in found, found
    result = run_main(main, str(recipe), "--output-dir", str(tmp_path / "out"))
    assert result.returncode == 2 and expected in result.stderr
    assert not (tmp_path / "out").exists(), "refused before anything was made"


def test_strength_is_bounded_and_needs_references(tmp_path: Path):
    photos(tmp_path / "refs" / "fox", 1)
    found = problems(guided(tmp_path, dog=", strength: 0.5"))
    assert found == ["classes.dog: strength without reference_images: set reference_images or remove it"]
    for bad in ("0", "1.5"):
        text = guided(tmp_path).read_text().replace("images_per_prompt: 1", f"images_per_prompt: 1, strength: {bad}")
        (found,) = problems(write_recipe(tmp_path, text))
        assert found.startswith("generation.strength: Input should be")


def test_a_family_without_image_to_image_and_a_strength_running_no_step_are_refused(tmp_path: Path):
    photos(tmp_path / "refs" / "fox", 1)
    pixart = tmp_path / "pixart"
    pixart.mkdir()
    (pixart / "model_index.json").write_text(json.dumps({"_class_name": "PixArtSigmaPipeline"}))
    (found,) = [p for p in _resolve_problems(guided(tmp_path, model=str(pixart))) if "reference_images" in p]
    assert found.startswith("classes.fox.reference_images: PixArt") and "no image-to-image pipeline" in found
    text = (
        guided(tmp_path).read_text().replace("reference_images: refs/fox", "reference_images: refs/fox, strength: 0.2")
    )
    (found,) = _resolve_problems(write_recipe(tmp_path, text))
    assert found.startswith("classes.fox.strength: 0.2 of 4 steps (generation.num_inference_steps) runs no")


def _resolve_problems(path: Path) -> list[str]:
    with pytest.raises(RecipeError) as caught:
        resolve_family(load_recipe(path), str(path))
    return caught.value.problems


def test_each_image_s_reference_comes_from_its_identity_alone(tmp_path: Path):
    photos(tmp_path / "refs" / "fox", 5)
    small, large = (load_recipe(guided(tmp_path, count=count)) for count in (4, 40))
    jobs = {job.id: job for shard in make_plan(large, {}).shards for job in shard.jobs}
    for shard in make_plan(small, {}).shards:
        for job in shard.jobs:
            assert job == jobs[job.id]  # more images change no image's reference, seed or prompt
    used = [job.reference for job in jobs.values() if job.class_name == "fox"]
    assert set(used) == {f"photo{i}.png" for i in range(5)}
    assert {job.reference for job in jobs.values() if job.class_name == "dog"} == {None}


def test_replacing_one_reference_changes_exactly_the_keys_of_the_shards_made_from_it(tmp_path: Path):
    fox = photos(tmp_path / "refs" / "fox", 5)
    recipe = guided(tmp_path, count=12)
    before = make_plan(load_recipe(recipe), {"fp": 1})
    Image.new("RGB", (8, 8)).save(fox[2])
    after = make_plan(load_recipe(recipe), {"fp": 1})
    changed = {s.key for s in before.shards} - {s.key for s in after.shards}
    made_from_it = {s.key for s in before.shards if any(job.reference == "photo2.png" for job in s.jobs)}
    assert changed == made_from_it and 0 < len(changed) < len(before.shards)
    assert [j.seed for s in before.shards for j in s.jobs] == [j.seed for s in after.shards for j in s.jobs]


def test_a_recipe_without_references_keeps_its_fingerprint_keys_and_columns():
    recipe = parse_recipe(SCALE_RECIPE.replace("COUNT", "4"))
    fingerprint = content_fingerprint(recipe, "cpu", "float32")
    digest = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]
    assert digest == "dc86b2223816e81f"  # computed by main before reference images existed
    assert [s.key for s in make_plan(recipe, fingerprint).shards] == [
        "5c06a61246f8f934f3624587",
        "e6bd40a74e7c602ef52c2c7e",
        "98d7a670adcfac53bdc0357e",
        "b9d39992d0f78ce42310bae8",
        "662bce862b4a2af57649084e",
        "8b2f94044e49955289c09b90",
    ]
    from builders.builder import dataset_features

    assert not set(REFERENCE_FEATURES) & set(dataset_features(recipe))


def test_a_reference_is_turned_upright_resized_to_cover_and_center_cropped(tmp_path: Path):
    image = Image.new("RGB", (90, 30), "red")
    image.paste((0, 0, 255), (30, 0, 60, 30))  # a blue middle third
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° to display
    image.save(tmp_path / "wide.jpg", exif=exif, quality=100)
    fitted = start_image(tmp_path / "wide.jpg", 16, 32)
    assert fitted.size == (16, 32)
    pixels = np.asarray(fitted).astype(int)
    assert pixels[16, 8, 2] > 200 and pixels[16, 8, 0] < 60, "the center of the upright image is the blue third"


def guided_dataset(root: Path, photo: Path) -> Path:
    """A dataset whose rows record ``photo`` as their reference, as a guided build's ``data/`` does."""
    import datasets

    digest = hashlib.sha256(photo.read_bytes()).hexdigest()
    images = [Image.new("RGB", (8, 8), color) for color in ("red", "blue")]
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=["fox", "dog"]),
            "reference_sha256": datasets.Value("string"),
        }
    )
    data = {"image": images, "label": [0, 1], "reference_sha256": [digest, None]}
    (root / "data").mkdir(parents=True)
    datasets.Dataset.from_dict(data, features=features).to_parquet(root / "data" / "train-00000-of-00001.parquet")
    return root


def test_training_refuses_an_eval_dataset_holding_a_reference_photo(tmp_path: Path):
    from training.config import TrainConfig, TrainingError
    from training.train import load_data

    (photo,) = photos(tmp_path / "real" / "fox", 1)
    photos(tmp_path / "real" / "dog", 1)
    dataset = guided_dataset(tmp_path / "synthetic", photo)
    config = TrainConfig(dataset=str(dataset), output_dir=str(tmp_path / "out"), eval_dataset=str(tmp_path / "real"))
    with pytest.raises(TrainingError, match=r"\[train\]: 1 image\(s\) \(rows \[1\]\) are reference photos"):
        load_data(config)
    photo.unlink()
    photos(tmp_path / "real" / "fox", 1, size=(9, 9))  # another photo of the same name
    train, evals, classes = load_data(config)
    assert classes == ["fox", "dog"] and len(evals) == 1


def test_the_generic_plug_in_guides_with_the_image_to_image_pipeline_diffusers_pairs_with_it():
    from builders.generators.generic import generic_for

    assert generic_for("QwenImagePipeline").image_to_image == "QwenImageImg2ImgPipeline"
    assert generic_for("Flux2Pipeline").image_to_image is None  # it takes reference images, but no strength
    assert generic_for("LuminaPipeline").image_to_image is None


def test_the_dry_run_lists_each_class_s_reference_photos_and_loads_no_model(tmp_path: Path):
    photos(tmp_path / "refs" / "fox", 3)
    result = run_main(main, str(guided(tmp_path)), "--dry-run", "--output-dir", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("reference photos"))
    assert f"fox: 3 from {tmp_path / 'refs' / 'fox'}, strength 0.75" in line and "dog" not in line


def test_the_reference_photos_a_quality_reference_holds_are_counted_per_class(tmp_path: Path):
    from builders.guided import quality_reference_leaks

    fox = photos(tmp_path / "refs" / "fox", 3)
    photos(tmp_path / "real" / "dog", 1)
    (tmp_path / "real" / "fox").mkdir()
    shutil.copy(fox[2], tmp_path / "real" / "fox" / "copied.png")
    text = guided(tmp_path).read_text().replace("clip: {enabled: false}", "clip: {model: tiny-random}")
    text += f"quality: {{reference: {tmp_path / 'real'}}}\n"
    recipe = load_recipe(write_recipe(tmp_path, text))
    assert quality_reference_leaks(recipe) == {"fox": 1}
    (tmp_path / "real" / "fox" / "copied.png").unlink()
    photos(tmp_path / "real" / "fox", 1, size=(10, 10))
    assert quality_reference_leaks(recipe) == {"fox": 0}
