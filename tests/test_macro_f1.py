"""Macro F1 averages over the classes present (references or predictions), as sklearn does by default."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

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
