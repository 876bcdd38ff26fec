"""Macro F1 averages over the classes present (references or predictions), as sklearn does by default; an empty
eval split is refused with a message naming it."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import f1_score

from training.config import TrainingError
from training.data import nonempty
from training.evaluation import compute_metrics

CLASSES = ["a", "b", "c", "d", "e"]


def test_a_perfect_classifier_on_a_subset_of_the_classes_scores_1():
    references = [0, 0, 2, 2, 4, 4]
    metrics = compute_metrics(references, references, CLASSES)
    assert metrics["macro_f1"] == 1.0 and metrics["accuracy"] == 1.0
    assert set(metrics["precision"]) == set(CLASSES)  # per-class numbers still name every class


def test_macro_f1_equals_sklearn_on_the_classes_present():
    rng = np.random.default_rng(0)
    references = rng.choice([0, 1, 3], 50).tolist()
    predictions = rng.choice([0, 1, 2, 3], 50).tolist()  # 2 is predicted but never true; 4 is absent from both
    expected = f1_score(references, predictions, average="macro", zero_division=0)
    assert compute_metrics(predictions, references, CLASSES)["macro_f1"] == pytest.approx(expected)
    assert expected != pytest.approx(f1_score(references, predictions, labels=range(5), average="macro"))


def split_of(labels: list[int]) -> datasets.Dataset:
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=CLASSES)})
    images = [Image.new("RGB", (8, 8), (label * 40, 0, 0)) for label in labels]
    return datasets.Dataset.from_dict({"image": images, "label": labels}, features=features)


def test_an_empty_eval_split_is_a_clear_error():
    """``load_data`` passes every eval split through ``nonempty`` before training (datasets' own readers refuse
    most empty splits already, with their own message)."""
    assert len(nonempty(split_of([0, 3]), "mine [test]")) == 2
    with pytest.raises(TrainingError, match=r"mine \[test\]: the eval split has no rows"):
        nonempty(split_of([0]).select([]), "mine [test]")
