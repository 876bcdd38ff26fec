"""Per-class precision and recall: one value per class, in the order of ``labels``."""

import datasets
import evaluate
from sklearn.metrics import precision_recall_fscore_support


class PrecisionRecall(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Precision and recall of every class (0 where a class is never predicted or never present).",
            citation="",
            inputs_description="predictions, references: integer class indices; labels: the class indices to report.",
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references, labels=None):
        precision, recall, _, support = precision_recall_fscore_support(
            references, predictions, labels=labels, average=None, zero_division=0
        )
        return {"precision": precision.tolist(), "recall": recall.tolist(), "support": [int(n) for n in support]}
