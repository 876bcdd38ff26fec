"""Scorers run on the images of a batch while they are still on the device.

``ScoringTask`` is what scoring needs to know (classes, their label texts and ImageNet names, the scorer
settings), taken from a recipe for a build or from a dataset for standalone scoring. ``load_scorers`` loads the
enabled models once per process; ``Scorers.score`` returns one list per column, in the rows' order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from builders.models import Placement
from builders.recipe import Recipe, ScoringSettings
from eval.preprocess import Images


@dataclass(frozen=True)
class ScoringTask:
    class_names: tuple[str, ...]
    label_texts: tuple[str, ...]
    imagenet_classes: tuple[tuple[str, ...], ...]
    settings: ScoringSettings

    @classmethod
    def from_recipe(cls, recipe: Recipe) -> "ScoringTask":
        return cls(
            class_names=tuple(recipe.class_names),
            label_texts=tuple(recipe.label_text(name) for name in recipe.class_names),
            imagenet_classes=tuple(tuple(spec.imagenet_classes) for spec in recipe.classes.values()),
            settings=recipe.scoring,
        )


def task_features(task: ScoringTask) -> dict:
    """The columns the enabled scorers add, in a fixed order."""
    from eval.clip import clip_features
    from eval.resnet50 import resnet50_features

    features = {}
    if task.settings.clip.enabled:
        features.update(clip_features(list(task.class_names)))
    if task.settings.resnet50.enabled:
        features.update(resnet50_features())
    return features


def scorer_features(recipe: Recipe) -> dict:
    return task_features(ScoringTask.from_recipe(recipe))


class Scorers:
    """The enabled scorers of a task, loaded once on one device."""

    def __init__(self, task: ScoringTask, device: str | torch.device, dtype: torch.dtype):
        from eval.clip import Clip, ClipScorer
        from eval.resnet50 import ResNet50Scorer

        settings = task.settings
        self.device = torch.device(device)
        self.clip = (
            ClipScorer(Clip(settings.clip.model, self.device, dtype), task.label_texts, settings.clip.label_templates)
            if settings.clip.enabled
            else None
        )
        self.resnet50 = (
            ResNet50Scorer(settings.resnet50.weights, task.imagenet_classes, self.device, dtype) if settings.resnet50.enabled else None
        )

    def score(self, images: Images, labels: Sequence[int], prompts: Sequence[str]) -> dict[str, list]:
        """Columns for a batch: ``images`` float (B, 3, H, W) in [0, 1] (or uint8, or a list of (3, H, W)) on the
        device, ``labels`` the true class indices, ``prompts`` the texts CLIPScore compares each image with."""
        if not len(labels):
            return {}
        label_tensor = torch.tensor(list(labels), device=self.device)
        columns: dict[str, list] = {}
        if self.clip:
            columns.update(self.clip.score(images, label_tensor, prompts))
        if self.resnet50:
            columns.update(self.resnet50.score(images, label_tensor))
        return columns


def load_scorers(recipe: Recipe, placement: Placement) -> Scorers:
    return Scorers(ScoringTask.from_recipe(recipe), placement.device, placement.dtype)
