"""Names, prompts and descriptions are written into the card as text: no HTML tag, link or script survives, and
each split lists only the prompts its images were made from. summary.json is strict JSON."""

from __future__ import annotations

import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import datasets
import pytest
from huggingface_hub import DatasetCard
from PIL import Image

from builders.card import write_card
from builders.plan import content_fingerprint, make_plan
from builders.recipe import parse_recipe
from eval.pictures import samples_name, write_pictures
from eval.summary import ClassSummary, DatasetSummary, summarize, write_summary
from synthcore.layout import split_sizes

HOSTILE = """
name: hostile
description: "<script>alert(1)</script> [click](javascript:alert(1)) <img src=x onerror=alert(1)>"
negative_prompt: "<img src=x onerror=alert(2)>"
model: {id: someone/some-sd-model}
classes:
  "<img src=x onerror=alert(3)>":
    prompts: ["<a href='javascript:alert(4)'>a fox</a>", "[a fox](javascript:alert(5))", "unused 1", "unused 2"]
    label_text: "<b onmouseover=alert(6)>fox</b>"
  "[dog](javascript:alert(7))":
    prompts: ["![dog](javascript:alert(8))", "<iframe src=javascript:alert(9)>", "unused 3"]
    negative_prompt: "<svg onload=alert(10)>"
  "dog<!--":
    prompts: ["-->&lt;script&gt;"]
splits: {train: 2, test: 1}
generation: {images_per_prompt: 1}
"""


class Tags(HTMLParser):
    """Every tag of the rendered card, with its attributes."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def hand_made_dataset(root: Path, recipe) -> None:
    """The recipe's planned rows, with small images, written as the build would lay them out."""
    plan = make_plan(recipe, content_fingerprint(recipe, "cpu", "float32"))
    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=recipe.class_names),
            "prompt": datasets.Value("string"),
        }
    )
    (root / "data").mkdir(parents=True)
    for split in recipe.splits:
        jobs = [job for shard in plan.shards_of(split) for job in shard.jobs]
        datasets.Dataset.from_dict(
            {
                "id": [job.id for job in jobs],
                "image": [Image.new("RGB", (16, 16), (50 * job.label, 0, 0)) for job in jobs],
                "label": [job.label for job in jobs],
                "prompt": [job.prompt for job in jobs],
            },
            features=features,
        ).to_parquet(str(root / "data" / f"{split}-00000-of-00001.parquet"))
    assert write_pictures(root, features, list(recipe.splits))[0] == samples_name(0)
    summary = summarize(root, splits=list(recipe.splits))
    write_card(root, recipe, features, split_sizes(root / "data", list(recipe.splits)), summary, {})


@pytest.fixture(scope="module")
def hostile_card(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("hostile")
    hand_made_dataset(root, parse_recipe(HOSTILE))
    return DatasetCard.load(root / "README.md").text


def test_no_tag_link_or_script_from_the_recipe_survives_in_the_card(hostile_card: str):
    prose = hostile_card.split("## Recipe")[0]
    assert not re.search(r"<[A-Za-z/!?]", prose), re.findall(r".{20}<[A-Za-z/!?].{20}", prose)
    assert not re.search(r"\]\(\s*javascript:", prose, re.I)
    markdown_it = pytest.importorskip("markdown_it")
    parser = Tags()
    parser.feed(markdown_it.MarkdownIt("commonmark").render(hostile_card))  # raw HTML passes through this renderer
    allowed = {"p", "h1", "h2", "strong", "em", "code", "pre", "ul", "li", "table", "thead", "tbody", "tr", "th", "td"}
    for tag, attrs in parser.tags:
        if tag == "a":
            assert set(attrs) == {"href"} and attrs["href"].startswith(("https://", "#")), attrs
        elif tag == "img":
            assert set(attrs) == {"src", "alt"} and attrs["src"].startswith("pictures/"), attrs
        else:
            assert tag in allowed and not attrs or tag == "code" and set(attrs) <= {"class"}, (tag, attrs)
    pictures = [attrs for tag, attrs in parser.tags if tag == "img"]
    assert len(pictures) == 3 and "&lt;img src=x onerror=alert\\(3\\)&gt;" in prose  # the name, as text
    assert "<img src=x onerror=alert(3)>" in pictures[0]["alt"]  # the alt text carries the name (inert)


def test_the_card_lists_only_prompts_with_images(hostile_card: str):
    prose = hostile_card.split("## Recipe")[0]
    assert "a fox" in prose and "iframe" in prose
    assert "unused" not in prose


def test_summary_json_is_strict_json_with_null_for_non_finite_scores(tmp_path: Path):
    scores = {"clip_true_prob_mean": math.nan, "clip_true_prob_median": math.inf, "clip_score_mean": 3.5}
    summary = DatasetSummary([ClassSummary("train", "fox", 2, 2, 0, False, scores)], filters={})
    path = write_summary(tmp_path, summary)

    def refuse(constant: str):
        raise AssertionError(f"{constant} in {path}")

    data = json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)
    assert data["classes"][0]["scores"] == {
        "clip_true_prob_mean": None,
        "clip_true_prob_median": None,
        "clip_score_mean": 3.5,
    }
