"""Metrics of one eval split, through the ``evaluate`` modules shipped in ``training/metrics`` (loaded by path)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import evaluate

METRICS_DIR = Path(__file__).resolve().parent / "metrics"


@cache
def load_metric(name: str) -> evaluate.Metric:
    return evaluate.load(str(METRICS_DIR / name))


def compute_metrics(predictions: list[int], references: list[int], classes: list[str]) -> dict:
    """Accuracy, macro F1 (over the classes present in references or predictions), per-class precision/recall
    (keyed by class name, every class) and the confusion matrix (every class)."""
    labels = list(range(len(classes)))
    inputs = {"predictions": predictions, "references": references}
    per_class = load_metric("precision_recall").compute(**inputs, labels=labels)
    return {
        **load_metric("accuracy").compute(**inputs),
        **load_metric("macro_f1").compute(**inputs),
        "precision": dict(zip(classes, per_class["precision"])),
        "recall": dict(zip(classes, per_class["recall"])),
        "support": dict(zip(classes, per_class["support"])),
        **load_metric("confusion_matrix").compute(**inputs, labels=labels),
    }
