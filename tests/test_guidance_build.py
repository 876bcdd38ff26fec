"""Real-image guidance end to end, on tiny random pipelines: one small guided build (32 px, a guided and an unguided
class), shared by the tests, is the same on 1 and 2 processes, records each row's reference, regenerates alone with
plain diffusers' image-to-image pipeline, reports its reference sets and warnings, and replacing one photo remakes
exactly the shards made from it. Every family with an image-to-image pipeline makes a guided batch that plain
diffusers reproduces image by image."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image, ImageOps

from builders.generators import FAMILIES, family_of, resolve_family
from builders.generators.tiny import tiny_family_dir
from builders.plan import make_plan
from builders.recipe import load_recipe
from synthcore.model_refs import Placement, resolve
from tests.helpers import ACCELERATE, SAME_THREADS, build_here, run_build, run_report, write_recipe

RECIPE = """
name: guided
model: {{id: {model}, safety_checker: false}}
generation: {{num_inference_steps: 4, height: 32, width: 32, batch_size: 2, images_per_prompt: 1, strength: 0.5}}
{negative}
classes:
  fox: {{prompts: [a red fox, a fox in snow], reference_images: photos/fox}}
  dog: {{prompts: [a dog]}}
splits: {{train: 4, test: 2}}
output: {{shard_size: 2}}
scoring: {{clip: {{model: tiny-random}}, resnet50: {{enabled: false}}}}
quality: {{reference: {real}}}
"""
PHOTOS = 3


def guided_folder(root: Path, model: str = "tiny-random", negative: str = "negative_prompt: blurry") -> Path:
    """A recipe folder: the recipe, three fox photos of another size than the images (so they are cropped), and a
    real-image folder for the quality pass that holds one of them."""
    rng = np.random.default_rng(0)
    (root / "photos" / "fox").mkdir(parents=True)
    for i in range(PHOTOS):
        Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(root / "photos" / "fox" / f"f{i}.png")
    for name in ("fox", "dog"):
        (root / "real" / name).mkdir(parents=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / "real" / name / "own.png")
    shutil.copy(root / "photos" / "fox" / "f1.png", root / "real" / "fox" / "leaked.png")
    return write_recipe(root, RECIPE.format(model=model, negative=negative, real=root / "real"))


@pytest.fixture(scope="module")
def guided_builds(tmp_path_factory) -> dict[str, Path]:
    """The guided recipe built by 1 and by 2 processes. Read-only."""
    root = tmp_path_factory.mktemp("guided")
    recipe = guided_folder(root)
    build_here(str(recipe), "--output-dir", str(root / "one"), env=SAME_THREADS)  # one process: this one
    two = [*ACCELERATE, "--num_processes", "2"]
    run_build(str(recipe), "--output-dir", str(root / "two"), env=SAME_THREADS, launcher=two)
    return {"root": root, "one": root / "one", "two": root / "two"}


def rows(out: Path) -> dict[str, dict]:
    files = sorted((out / "data").glob("*.parquet"))
    return {row["id"]: row for row in pa.concat_tables([pq.read_table(f) for f in files]).to_pylist()}


@pytest.mark.e2e
def test_a_guided_build_is_the_same_on_1_and_2_processes_and_records_each_row_s_reference(guided_builds):
    one, two = rows(guided_builds["one"]), rows(guided_builds["two"])
    assert run_report(guided_builds["two"])["processes"] == 2
    assert one == two and len(one) == 12
    photos = guided_builds["root"] / "photos" / "fox"
    hashes = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in photos.iterdir()}
    for row in one.values():
        if row["id"].split("/")[1] == "fox":
            assert row["reference_sha256"] == hashes[row["reference_image"]]
            assert -1 <= row["reference_similarity"] <= 1
        else:
            assert (row["reference_image"], row["reference_sha256"], row["reference_similarity"]) == (None,) * 3
    stored = load_recipe(guided_builds["one"] / "recipe.yaml")
    assert stored.classes["fox"].reference_sha256 == hashes and stored.classes["dog"].reference_images is None


@pytest.mark.e2e
def test_the_report_and_card_list_the_reference_sets_and_warn(guided_builds):
    info = json.loads((guided_builds["one"] / "build_info.json").read_text())
    fox = info["reference_images"]["fox"]
    assert list(info["reference_images"]) == ["fox"]
    assert (fox["references"], fox["strength"], fox["scored_rows"], fox["in_quality_reference"]) == (PHOTOS, 0.5, 6, 1)
    assert fox["near_copies"] == sum(
        row["reference_similarity"] >= 0.95 for row in rows(guided_builds["one"]).values() if row["reference_image"]
    )
    card = (guided_builds["one"] / "README.md").read_text(encoding="utf-8")
    assert "## Real-image guidance" in card and f"| fox | {PHOTOS} | `{fox['set_sha256'][:16]}` | 0.5 |" in card
    assert "REFERENCE LEAKAGE: quality.reference holds 1 of the reference photos" in card
    assert not list(guided_builds["one"].rglob("f1.png")), "the photos are not published"


def regenerated_alone(generator_class: str, model: str, row: dict, photo: Path, recipe) -> np.ndarray:
    """The row's image made alone by plain diffusers: its image-to-image pipeline, the recorded photo fitted as
    documented (EXIF upright, Lanczos cover, center crop), the row's prompt, seed and the strength."""
    import diffusers

    pipe = getattr(diffusers, generator_class).from_pretrained(resolve(model, "sd"))
    gen = recipe.generation
    negative = {"negative_prompt": row["negative_prompt"]} if family_of(recipe).negative_prompt else {}
    size = (
        {"height": gen.height, "width": gen.width} if generator_class.startswith(("Flux", "StableDiffusion3")) else {}
    )
    if recipe.model.max_sequence_length is not None:
        size["max_sequence_length"] = recipe.model.max_sequence_length
    start = ImageOps.fit(
        ImageOps.exif_transpose(Image.open(photo)).convert("RGB"), (gen.width, gen.height), Image.LANCZOS
    )
    image = pipe(
        row["prompt"],
        image=start,
        strength=recipe.strength_of("fox"),
        generator=torch.Generator().manual_seed(row["seed"]),
        num_inference_steps=gen.num_inference_steps,
        guidance_scale=row["guidance_scale"],
        output_type="np",
        **negative,
        **size,
    ).images[0]
    return (image * 255).round().astype(int)


@pytest.mark.e2e
def test_a_row_regenerates_alone_with_plain_diffusers_image_to_image(guided_builds):
    recipe = load_recipe(guided_builds["one"] / "recipe.yaml")
    row = rows(guided_builds["one"])["train/fox/000001"]
    photo = guided_builds["root"] / "photos" / "fox" / row["reference_image"]
    alone = regenerated_alone("StableDiffusionImg2ImgPipeline", "tiny-random", row, photo, recipe)
    kept = np.asarray(Image.open(io.BytesIO(row["image"]["bytes"]))).astype(int)
    assert abs(alone - kept).max() <= 2


@pytest.mark.e2e
def test_replacing_one_photo_remakes_exactly_the_shards_made_from_it(guided_builds, tmp_path: Path):
    before = rows(guided_builds["one"])
    shutil.copytree(guided_builds["root"] / "photos", tmp_path / "photos")
    shutil.copytree(guided_builds["root"] / "real", tmp_path / "real")
    text = (guided_builds["root"] / "recipe.yaml").read_text()
    recipe = write_recipe(tmp_path, text.replace(str(guided_builds["root"] / "real"), str(tmp_path / "real")))
    shutil.copytree(guided_builds["one"], tmp_path / "out")
    Image.new("RGB", (32, 32), "green").save(tmp_path / "photos" / "fox" / "f1.png")
    build_here(str(recipe), "--output-dir", str(tmp_path / "out"), env=SAME_THREADS)
    after = rows(tmp_path / "out")
    made_from_it = [i for i, row in before.items() if row["reference_image"] == "f1.png"]
    plan = make_plan(load_recipe(recipe), {})
    remade = {job.id for shard in plan.shards if any(j.reference == "f1.png" for j in shard.jobs) for job in shard.jobs}
    assert made_from_it and run_report(tmp_path / "out")["images_generated"] == len(remade) < len(before)
    for i, row in after.items():
        if i in made_from_it:
            assert row["image"] != before[i]["image"] and row["reference_sha256"] != before[i]["reference_sha256"]
        else:
            assert row == before[i], i  # byte-identical, scores included


GUIDED_FAMILIES = [name for family in FAMILIES if family.image_to_image for name in family.tiny_names]


@pytest.mark.e2e
@pytest.mark.parametrize("family", GUIDED_FAMILIES)
def test_every_family_with_image_to_image_makes_a_guided_batch_diffusers_reproduces_alone(family: str, tmp_path):
    negative = "" if family.startswith("flux") else "negative_prompt: blurry"
    recipe = resolve_family(load_recipe(guided_folder(tmp_path, str(tiny_family_dir(family)), negative)))
    plugin = family_of(recipe)
    loaded = plugin.load(recipe, Placement("cpu", "float32"))
    (batch, *_) = make_plan(recipe, {}).shards[0].batches
    made = loaded.generate(batch)
    shared = {name for name, module in loaded.image_to_image().components.items() if module is not None}
    assert all(loaded.image_to_image().components[n] is loaded.pipe.components[n] for n in shared), "from_pipe"
    for i, job in enumerate(made.jobs):
        row = {"prompt": job.prompt, "negative_prompt": job.negative_prompt, "seed": job.seed}
        row["guidance_scale"] = job.guidance_scale
        photo = recipe.reference_path(job.class_name, job.reference)
        alone = regenerated_alone(plugin.image_to_image, str(tiny_family_dir(family)), row, photo, recipe)
        kept = (made.images[i].permute(1, 2, 0).numpy() * 255).round().astype(int)
        assert abs(alone - kept).max() <= 2, (family, job.id)
