"""Train a classifier on a generated dataset: a ResNet18 linear probe (or fine-tune), evaluated with real metrics.

``python -m training --dataset DIR_OR_HUB_ID --output-dir OUT``; then ``training.load_classifier(OUT)``.
"""

from training.classifier import ImageClassifier, load_classifier

__all__ = ["ImageClassifier", "load_classifier"]
