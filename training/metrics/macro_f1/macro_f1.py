"""Macro F1: the unweighted mean of per-class F1, so a rare class counts as much as a common one.

The mean is over the classes present in the references or the predictions (sklearn's default): a class absent
from both says nothing about the classifier, so a perfect classifier scores 1 on a split holding some classes.
"""

import datasets
import evaluate
from sklearn.metrics import f1_score


class MacroF1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Unweighted mean over classes of the F1 score.",
            citation="",
            inputs_description="predictions, references: integer class indices (at least one of each); the mean is "
            "over the classes present in either.",
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references):
        return {"macro_f1": float(f1_score(references, predictions, average="macro", zero_division=0))}
