"""Macro F1: the unweighted mean of per-class F1, so a rare class counts as much as a common one."""

import datasets
import evaluate
from sklearn.metrics import f1_score


class MacroF1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Unweighted mean over classes of the F1 score.",
            citation="",
            inputs_description="predictions, references: integer class indices; labels: every class index, so "
            "classes absent from a split still count (as 0).",
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references, labels=None):
        return {"macro_f1": float(f1_score(references, predictions, labels=labels, average="macro", zero_division=0))}
