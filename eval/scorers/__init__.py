"""The scorer registry: every scorer plug-in, and what the rest of the tool derives from it.

To add a scorer, write a module beside these with a ``Scorer`` subclass (see ``eval/scorers/base.py``) and add
one line to ``SCORERS``. The recipe's ``scoring`` section (``ScoringSettings``), the dataset's columns, the
filters, the summary, the card, ``build_info.json`` and ``python -m eval`` all iterate this registry.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pydantic import ConfigDict, Field, create_model

from eval.preprocess import Images
from eval.scorers.base import LoadedScorer, Scorer, ScorerSettings, ScoringTask
from eval.scorers.clip import ClipScorer, LoadedClip
from eval.scorers.resnet50 import ResNet50Scorer
from synthcore.availability import ModelNeed

SCORERS: dict[str, Scorer] = {
    scorer.name: scorer
    for scorer in (
        ClipScorer(),
        ResNet50Scorer(),
    )
}

ScoringSettings = create_model(
    "ScoringSettings",
    __config__=ConfigDict(extra="forbid", frozen=True, strict=True),
    __doc__="The recipe's ``scoring`` section: one key per registered scorer, with that scorer's settings.",
    **{
        name: (scorer.Settings, Field(default=scorer.Settings(), description=type(scorer).__doc__))
        for name, scorer in SCORERS.items()
    },
)


def settings_of(scoring: ScoringSettings, name: str) -> ScorerSettings:
    return getattr(scoring, name)


def enabled_scorers(scoring: ScoringSettings) -> list[tuple[Scorer, ScorerSettings]]:
    """The enabled scorers with their settings, in registry order."""
    return [
        (scorer, settings_of(scoring, name)) for name, scorer in SCORERS.items() if settings_of(scoring, name).enabled
    ]


def scorer_features(task: ScoringTask, scoring: ScoringSettings) -> dict:
    """The columns the enabled scorers add, in registry order."""
    return {
        column: feature
        for scorer, settings in enabled_scorers(scoring)
        for column, feature in scorer.features(task, settings).items()
    }


def scorer_provenance(scoring: ScoringSettings) -> dict:
    return {scorer.name: scorer.provenance(settings) for scorer, settings in enabled_scorers(scoring)}


def scorer_model_refs(scoring: ScoringSettings) -> list[ModelNeed]:
    """The models the enabled scorers load, each with its recipe key (``scoring.<name>.<field>``)."""
    return [ref for scorer, settings in enabled_scorers(scoring) for ref in scorer.model_refs(settings)]


class Scorers:
    """The enabled scorers of a task, loaded once on one device."""

    def __init__(self, task: ScoringTask, scoring: ScoringSettings, device: str | torch.device, dtype: torch.dtype):
        self.device = torch.device(device)
        self.loaded: list[LoadedScorer] = [
            scorer.load(settings, task, self.device, dtype) for scorer, settings in enabled_scorers(scoring)
        ]

    def score(self, images: Images, labels: Sequence[int], prompts: Sequence[str]) -> dict[str, list]:
        """One list per column for a batch, in the rows' order (see ``LoadedScorer.score``)."""
        if not len(labels):
            return {}
        label_tensor = torch.tensor(list(labels), device=self.device)
        return {
            column: values
            for scorer in self.loaded
            for column, values in scorer.score(images, label_tensor, prompts).items()
        }

    def image_similarity(self, images: Images, others: Images) -> list[float] | None:
        """CLIP's cosine similarity of each image to its match in ``others`` (``None`` when the CLIP scorer is
        off): how close a guided image stayed to the real image it started from (``reference_similarity``)."""
        clip = next((scorer.clip for scorer in self.loaded if isinstance(scorer, LoadedClip)), None)
        if clip is None or not len(images):
            return None
        return (clip.embed_images(images) * clip.embed_images(others)).sum(-1).tolist()
