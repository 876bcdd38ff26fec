"""Score columns of a build (tiny random CLIP and ResNet50): types, valid probabilities, the evaluate module,
switches."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch

from builders.recipe import load_recipe, parse_recipe
from eval.scorers import scorer_features
from eval.scorers.resnet50 import imagenet_categories
from eval.summary import read_summary
from tests.helpers import ROOT, SCORE_FEATURES, build_here, write_recipe


@pytest.fixture(scope="module")
def smoke(smoke_dir: Path) -> datasets.DatasetDict:
    return datasets.load_dataset(str(smoke_dir))


@pytest.mark.e2e
def test_score_columns_have_the_contract_types(smoke):
    for split in smoke.values():
        assert {name: str(split.features[name]) for name in SCORE_FEATURES} == SCORE_FEATURES


@pytest.mark.e2e
def test_clip_probabilities_are_distributions_over_the_classes(smoke):
    for split in smoke.values():
        probs = np.array(split["clip_probs"][:])
        labels = np.array(split["label"][:])
        assert probs.shape == (split.num_rows, 3)
        assert ((probs >= 0) & (probs <= 1)).all() and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
        assert np.array_equal(split["clip_pred"][:], probs.argmax(axis=1))
        assert np.allclose(split["clip_true_prob"][:], probs[np.arange(len(labels)), labels])
        scores = np.array(split["clip_score"][:])
        assert ((scores >= 0) & (scores <= 100)).all()


@pytest.mark.e2e
def test_resnet50_top5_and_agreement_with_the_recipe_mapping(smoke):
    categories = imagenet_categories()
    fox = set(load_recipe(ROOT / "recipes" / "smoke.yaml").classes["fox"].imagenet_classes)
    for split in smoke.values():
        for row in split.select_columns(["label", *[c for c in SCORE_FEATURES if c.startswith("resnet50")]]):
            assert len(row["resnet50_top5_ids"]) == 5 and row["resnet50_top5_labels"] == [
                categories[i] for i in row["resnet50_top5_ids"]
            ]
            probs = row["resnet50_top5_probs"]
            assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
            expected = bool(fox & set(row["resnet50_top5_labels"])) if row["label"] == 0 else None  # only fox is mapped
            assert row["resnet50_match"] is expected


@pytest.mark.e2e
def test_summary_matches_the_columns_and_is_printed(smoke, smoke_dir: Path):
    summary = read_summary(smoke_dir)
    assert [(c.split, c.class_name) for c in summary.classes] == [
        (s, n) for s in ("train", "test") for n in ("fox", "dog", "여우")
    ]
    for entry in summary.classes:
        label = ["fox", "dog", "여우"].index(entry.class_name)
        rows = smoke[entry.split].filter(lambda r, label=label: r["label"] == label)
        assert (entry.generated, entry.kept, entry.dropped, entry.emptied_by_filters) == (
            rows.num_rows,
            rows.num_rows,
            0,
            False,
        )
        assert entry.scores["clip_true_prob_mean"] == pytest.approx(np.mean(rows["clip_true_prob"][:]), rel=1e-6)
        assert entry.scores["clip_true_prob_median"] == pytest.approx(np.median(rows["clip_true_prob"][:]), rel=1e-6)
        assert entry.scores["clip_score_mean"] == pytest.approx(np.mean(rows["clip_score"][:]), abs=1e-5)
        matches = [m for m in rows["resnet50_match"][:] if m is not None]
        assert entry.scores["resnet50_agreement"] == (pytest.approx(np.mean(matches)) if matches else None)
    assert json.loads((smoke_dir / "summary.json").read_text())["emptied_by_filters"] == []


@pytest.mark.e2e
def test_unfiltered_export_copies_the_shards(smoke_dir: Path):
    """Exported files are copies of the shards (the same bytes, never the same inode: damage to one is not damage
    to both)."""
    shards = {p.read_bytes(): p.stat().st_ino for p in (smoke_dir / ".synthdata" / "shards").glob("*.parquet")}
    exported = {p.read_bytes(): p.stat().st_ino for p in (smoke_dir / "data").glob("*.parquet")}
    assert exported.keys() == shards.keys()
    assert not set(exported.values()) & set(shards.values())
    assert not (smoke_dir / "dropped").exists()


@pytest.mark.e2e
def test_evaluate_module_loads_by_path_and_gives_the_build_column(smoke):
    import evaluate

    clip = evaluate.load(str(ROOT / "eval" / "metrics" / "clip_score"), model="tiny-random", device="cpu", batch_size=5)
    split = smoke["train"]
    result = clip.compute(images=split["image"][:], texts=split["prompt"][:])
    assert result["clip_scores"] == pytest.approx(split["clip_score"][:], abs=1e-3)
    assert result["clip_score"] == pytest.approx(np.mean(split["clip_score"][:]), abs=1e-3)


@pytest.mark.e2e
def test_long_prompt_is_truncated_with_a_warning(caplog):
    from eval.scorers.clip import Clip

    clip = Clip("tiny-random", "cpu")
    long_prompt = "a watercolor painting of a red fox in the snow " * 4  # > 77 byte-level tokens
    with caplog.at_level(logging.WARNING, logger="eval.clip"):
        embeds = clip.embed_texts([long_prompt, "a fox"])
    assert embeds.shape == (2, clip.model.config.projection_dim)
    assert any("truncated" in r.message and "to 77 tokens" in r.message for r in caplog.records)


def test_scorer_switches_remove_columns():
    base = "name: t\nclasses: {a: {prompts: [x]}}\nsplits: {train: 1}\n"
    for clip, resnet, expected in [
        (True, True, set(SCORE_FEATURES)),
        (False, True, {c for c in SCORE_FEATURES if c.startswith("resnet50")}),
        (True, False, {c for c in SCORE_FEATURES if c.startswith("clip")}),
        (False, False, set()),
    ]:
        recipe = parse_recipe(
            base
            + f"scoring: {{clip: {{enabled: {str(clip).lower()}}}, resnet50: {{enabled: {str(resnet).lower()}}}}}\n"
        )
        assert set(scorer_features(recipe.scoring_task(), recipe.scoring)) == expected
    recipe = parse_recipe(base + "scoring: {clip: {embeddings: false}}\n")
    assert set(scorer_features(recipe.scoring_task(), recipe.scoring)) == set(SCORE_FEATURES) - {"clip_embedding"}


@pytest.mark.e2e
def test_clip_embedding_is_the_unit_image_embedding(smoke):
    from eval.scorers.clip import Clip

    clip = Clip("tiny-random", "cpu")
    for split in smoke.values():
        stored = np.array(split["clip_embedding"][:])
        assert stored.shape == (split.num_rows, clip.model.config.projection_dim)
        assert np.allclose(np.linalg.norm(stored, axis=1), 1, atol=1e-5)
        again = clip.embed_images(
            [torch.from_numpy(np.array(i.convert("RGB"))).permute(2, 0, 1) for i in split["image"]]
        )
        assert np.allclose(again.numpy(), stored, atol=1e-4)


@pytest.mark.e2e
def test_build_without_clip_has_only_resnet_columns(tmp_path: Path):
    recipe = write_recipe(
        tmp_path,
        "name: noclip\nmodel: {id: tiny-random}\ngeneration: "
        "{num_inference_steps: 2, height: 32, width: 32, batch_size: 2}\n"
        "classes: {fox: {prompts: [a fox], imagenet_classes: [red fox]}}\nsplits: {train: 2}\n"
        "scoring: {clip: {enabled: false}, resnet50: {weights: tiny-random}}\n",
    )
    result = build_here(str(recipe), "--output-dir", str(tmp_path / "out"))
    train = datasets.load_dataset(str(tmp_path / "out"), split="train")
    assert [c for c in train.column_names if c.startswith(("clip", "resnet50"))] == [
        c for c in SCORE_FEATURES if c.startswith("resnet50")
    ]
    assert "ResNet50 agree" in result.stdout and "fox" in result.stdout


def test_unknown_imagenet_class_is_a_recipe_error_with_its_key_path():
    from builders.recipe import RecipeError

    with pytest.raises(RecipeError) as caught:
        parse_recipe(
            "name: t\nclasses: {fox: {prompts: [x], imagenet_classes: [red fox, arctic fox]}}\nsplits: {train: 1}\n",
            "r.yaml",
        )
    assert caught.value.problems == [
        "classes.fox.imagenet_classes[1]: 'arctic fox' is not an ImageNet class name; did you mean 'Arctic fox'?"
    ]


@pytest.mark.parametrize(
    "settings, expected",
    [
        (
            "scoring: {clip: {enabled: false}}\nfilters: {min_clip_score: 20}",
            "filters.min_clip_score: reads the clip scores, but scoring.clip.enabled is false",
        ),
        (
            "scoring: {clip: {enabled: false}}\nfilters: {min_true_class_prob: 0.5}",
            "filters.min_true_class_prob: reads the clip scores",
        ),
        (
            "scoring: {resnet50: {enabled: false}}\nfilters: {require_imagenet_match: true}",
            "filters.require_imagenet_match: reads the resnet50 scores",
        ),
        ("filters: {require_imagenet_match: true}", "filters.require_imagenet_match: no class has imagenet_classes"),
        ("filters: {min_clip_score: 101}", "filters.min_clip_score: Input should be less than or equal to 100"),
    ],
)
def test_filters_need_their_scorers(settings: str, expected: str):
    from builders.recipe import RecipeError

    with pytest.raises(RecipeError) as caught:
        parse_recipe(f"name: t\nclasses: {{a: {{prompts: [x]}}}}\nsplits: {{train: 1}}\n{settings}\n", "r.yaml")
    assert any(p.startswith(expected) for p in caught.value.problems), caught.value.problems


def test_split_named_like_a_dropped_split_is_refused_with_split_mode():
    from builders.recipe import RecipeError

    with pytest.raises(RecipeError, match="splits.train_dropped: with filters.dropped 'split'"):
        parse_recipe(
            "name: t\nclasses: {a: {prompts: [x]}}\nsplits: {train: 1, train_dropped: 1}\nfilters: "
            "{min_clip_score: 1, dropped: split}\n"
        )
