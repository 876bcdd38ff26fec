"""Scorers run on the images of a batch while they are still on the device.

(Core build: no scorer columns yet; the CLIP and ResNet50 scorers land with the scoring issue.)
"""

from __future__ import annotations


def scorer_features(recipe) -> dict:
    return {}


class _NoScorers:
    def score(self, images, labels, prompts) -> dict:
        return {}


def load_scorers(recipe, placement):
    return _NoScorers()
