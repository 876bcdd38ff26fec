"""The dataset card and the pictures: parsed back with huggingface_hub, the YAML pointing at the right files."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import datasets
import pytest
import yaml
from huggingface_hub import DatasetCard, DatasetCardData
from PIL import Image

from builders.builder import dataset_features
from builders.card import license_metadata, license_text, write_card
from builders.generators import resolve_family
from builders.recipe import HubSettings, load_recipe, parse_recipe
from eval.pictures import HISTOGRAM_NAME, histogram_size, samples_name, samples_size, write_pictures
from eval.summary import summarize
from synthcore.cardmeta import size_category
from synthcore.layout import split_sizes
from synthcore.readback import split_files, stored_features
from tests.helpers import ROOT

SMOKE = ROOT / "recipes" / "smoke.yaml"


def card_of(root: Path) -> DatasetCard:
    return DatasetCard.load(root / "README.md")


def embedded_recipe(card: DatasetCard) -> dict:
    block = re.search(r"## Recipe\n.*?```yaml\n(.*?)```", card.text, re.S)
    assert block, "the card has no recipe block"
    return yaml.safe_load(block.group(1))


@pytest.mark.e2e
def test_card_metadata_is_what_the_hub_reads(smoke_dir: Path):
    data = card_of(smoke_dir).data
    assert data.license == "apache-2.0"  # tiny-random: random weights made by this project
    assert data.task_categories == ["image-classification"] and data.task_ids == ["multi-class-image-classification"]
    assert data.size_categories == ["n<1K"]
    assert {"synthetic", "stable-diffusion"} <= set(data.tags)
    assert data.pretty_name == "smoke"
    [config] = data.configs
    for entry in config["data_files"]:
        matched = sorted(str(p) for pattern in entry["path"] for p in smoke_dir.glob(pattern))
        assert matched == split_files(smoke_dir, entry["split"]) and matched
    assert {s["name"]: s["num_examples"] for s in data.dataset_info["splits"]} == {"train": 12, "test": 6}


@pytest.mark.e2e
def test_card_text_describes_the_dataset(smoke_dir: Path):
    text = card_of(smoke_dir).text
    recipe = load_recipe(SMOKE)
    for name in recipe.class_names:
        assert f"| {name} |" in text
    assert "“수채화 여우”" in text and "“a watercolor painting of a golden retriever”" in text
    assert "**prompt-disjoint**" in text
    assert (
        "| inference steps | 4 |" in text
        and "| image size | 32 × 32 |" in text
        and "| device and dtype | cpu, float32 |" in text
    )
    assert "| train | 여우 | 4 | 4 | 0 |" in text and "| test | 여우 | 2 | 2 | 0 |" in text
    assert 'load_dataset("USER/NAME", split="train")' in text and "python build.py USER/NAME" in text
    for link in re.findall(r"\]\((pictures/[^)]+)\)", text):
        assert (smoke_dir / link).is_file(), link
    assert text.count("](pictures/samples-class-") == len(recipe.classes)


@pytest.mark.e2e
def test_embedded_recipe_rebuilds_the_same_dataset(smoke_dir: Path):
    recipe = parse_recipe(yaml.safe_dump(embedded_recipe(card_of(smoke_dir))))
    assert (
        recipe
        == load_recipe(smoke_dir / "recipe.yaml").model_copy(update={"hub": HubSettings()})
        == resolve_family(load_recipe(SMOKE))
    )


@pytest.mark.e2e
def test_load_dataset_reads_every_feature_locally(smoke_dir: Path):
    features = dataset_features(load_recipe(SMOKE))
    whole = datasets.load_dataset(str(smoke_dir))
    train = datasets.load_dataset(str(smoke_dir), split="train")
    assert list(whole) == ["train", "test"] and whole["test"].num_rows == 6
    assert whole["train"].features == train.features == features
    assert train[0]["image"].size == (32, 32)


@pytest.mark.e2e
def test_sample_grids_are_pngs_of_the_expected_size(smoke_dir: Path):
    for label in range(3):
        with Image.open(smoke_dir / samples_name(label)) as picture:
            assert picture.format == "PNG" and picture.size == samples_size(2)
            picture.verify()
    with Image.open(smoke_dir / HISTOGRAM_NAME) as picture:  # the smoke build has CLIP columns: a histogram
        assert picture.format == "PNG" and picture.size == histogram_size(3)
    assert sorted(p.name for p in (smoke_dir / "pictures").iterdir()) == [
        "clip-embeddings.png",
        "clip-true-prob.png",
    ] + [f"samples-class-00{i}.png" for i in range(3)]


# -- a scored dataset in the Hub layout, written with datasets itself -----------------------------------------------
SCORED = """
name: scored
description: "A *scored* dataset | with markup"
model: {id: someone/some-sd-model}
classes:
  red fox: {prompts: ["a red fox", "a fox in the snow"], imagenet_classes: [red fox]}
  "a|b*c": {prompts: ["<b>bold</b> prompt"]}
  여우: {prompts: ["수채화 여우"]}
splits: {train: 5, test: 2}
"""


@pytest.fixture()
def scored_dir(tmp_path: Path) -> Path:
    recipe = parse_recipe(SCORED)
    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=recipe.class_names),
            "clip_true_prob": datasets.Value("float32"),
        }
    )
    (tmp_path / "data").mkdir()
    for split, count in recipe.splits.items():
        rows = [(label, i) for label in range(3) for i in range(count)]
        datasets.Dataset.from_dict(
            {
                "id": [f"{split}/{label}/{i}" for label, i in rows],
                "image": [Image.new("RGB", (24, 16), (40 * label, 10 * i, 100)) for label, i in rows],
                "label": [label for label, _ in rows],
                "clip_true_prob": [0.1 + 0.3 * label + 0.01 * i for label, i in rows],
            },
            features=features,
        ).to_parquet(str(tmp_path / "data" / f"{split}-00000-of-00001.parquet"))
    written = write_pictures(tmp_path, features, list(recipe.splits))
    summary = summarize(tmp_path, splits=list(recipe.splits))
    write_card(tmp_path, recipe, features, split_sizes(tmp_path / "data", list(recipe.splits)), summary, {})
    assert written == [samples_name(i) for i in range(3)] + [HISTOGRAM_NAME]
    return tmp_path


def test_scored_dataset_gets_a_histogram_and_score_table(scored_dir: Path):
    with Image.open(scored_dir / HISTOGRAM_NAME) as picture:
        assert picture.format == "PNG" and picture.size == histogram_size(3)
    card = card_of(scored_dir)
    assert f"]({HISTOGRAM_NAME})" in card.text
    assert "| train | red fox | 5 | 5 | 0 | 0.120 | 0.120 | - | - |" in card.text  # 0.1 + 0.01 i for i < 5
    assert "| test | a\\|b\\*c | 2 | 2 | 0 | 0.405 | 0.405 | - | - |" in card.text  # markup escaped, the table intact
    prose, recipe_block = card.text.split("## Recipe")
    assert "&lt;b&gt;bold&lt;/b&gt; prompt" in prose and "<b>" not in prose and "- <b>bold</b> prompt" in recipe_block
    assert "A \\*scored\\* dataset \\| with markup" in card.text
    assert card.data.license == "other" and card.data.license_link == "https://huggingface.co/someone/some-sd-model"
    assert "[someone/some-sd-model](https://huggingface.co/someone/some-sd-model)" in card.text
    assert "torchvision.models.resnet50.html" in card.text and "ResNet50_Weights.IMAGENET1K_V2" in card.text


def test_the_card_shows_the_summary_it_is_given(scored_dir: Path):
    summary = summarize(scored_dir, splits=["train", "test"])
    last = summary.classes[-1]
    summary.classes[-1] = dataclasses.replace(last, scores={**last.scores, "clip_score_mean": 31.25})
    features = stored_features(scored_dir, "train")
    sizes = split_sizes(scored_dir / "data", ["train", "test"])
    write_card(scored_dir, parse_recipe(SCORED), features, sizes, summary, {})
    assert "| test | 여우 | 2 | 2 | 0 | 0.705 | 0.705 | 31.25 | - |" in card_of(scored_dir).text


@pytest.mark.parametrize(
    "rows, category", [(0, "n<1K"), (999, "n<1K"), (1000, "1K<n<10K"), (250_000, "100K<n<1M"), (10**10, "n>1B")]
)
def test_size_categories(rows: int, category: str):
    assert size_category(rows) == category


def test_license_of_unknown_and_local_generators(tmp_path: Path):
    assert license_metadata("stable-diffusion-v1-5/stable-diffusion-v1-5") == {"license": "creativeml-openrail-m"}
    assert license_metadata(str(tmp_path / "My Model")) == {"license": "other", "license_name": "my-model-license"}


@pytest.mark.parametrize(
    "model_id, expected",
    [
        ("black-forest-labs/FLUX.1-schnell", "`apache-2.0`"),
        (
            "black-forest-labs/FLUX.1-dev",
            "`flux-1-dev-non-commercial-license`, [its terms](https://huggingface.co/black-forest-labs/FLUX.1-dev/blob"
            "/main/LICENSE.md); **non-commercial use only**",
        ),
        (
            "black-forest-labs/FLUX.2-dev",
            "`flux-non-commercial-license`, [its terms](https://huggingface.co/black-forest-labs/FLUX.2-dev/blob/main"
            "/LICENSE.md); **non-commercial use only**",
        ),
        ("stabilityai/sdxl-turbo", "**non-commercial use only**"),
        ("Qwen/Qwen-Image-2.1-Turbo", "**non-commercial use only**"),
        ("CalamitousFelicitousness/Krea-2-Turbo-Diffusers", "`krea-2-community`, [its terms](https://www.krea.ai/"),
        (
            "some-org/unknown-model",
            "`unknown-model-license`, [its terms](https://huggingface.co/some-org/unknown-model)",
        ),
    ],
)
def test_the_card_names_the_licence_and_says_where_it_forbids_commercial_use(model_id: str, expected: str):
    text = license_text(DatasetCardData(**license_metadata(model_id)))
    assert expected in text
    assert ("non-commercial" in text) == ("non-commercial use only" in expected)
