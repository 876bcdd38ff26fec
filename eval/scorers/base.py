"""What a scorer plug-in is: its settings, its columns, how it scores a batch, and what it says about itself.

A scorer is one module under ``eval/scorers/`` defining a subclass of ``Scorer`` and one line in the registry
(``eval/scorers/__init__.py``). From that, every other part works without naming it: the recipe's ``scoring``
section gets a ``<name>`` key with its ``Settings``; the dataset gets its ``features``; its ``filters`` become
keys of the recipe's ``filters`` section; its ``summary`` statistics become columns of ``summary.json``, the
printed table and the card; ``describe`` and ``provenance`` fill the card's model table and ``build_info.json``;
``cli_options`` become options of ``python -m eval``; ``model_refs`` are checked before any work starts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from eval.preprocess import Images
from synthcore.availability import ModelNeed


class ScorerSettings(BaseModel):
    """A scorer's recipe settings (``scoring.<name>``): strict, unknown keys refused, on unless ``enabled: false``."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    enabled: bool = Field(default=True, description="run this scorer (its columns, filters and summary)")


@dataclass(frozen=True)
class ScoringTask:
    """What every scorer may need to know about the classes: names, the texts that describe them, and the
    ImageNet names that count as each (empty where a class has none)."""

    class_names: tuple[str, ...]
    label_texts: tuple[str, ...]
    imagenet_classes: tuple[tuple[str, ...], ...]

    @classmethod
    def plain(cls, class_names: Sequence[str]) -> ScoringTask:
        """A task from class names alone (a dataset scored without a recipe)."""
        return cls(tuple(class_names), tuple(class_names), tuple(() for _ in class_names))


@dataclass(frozen=True)
class FilterRule:
    """A recipe filter on one of the scorer's columns: ``min`` keeps rows whose value is at least the threshold
    (a null fails); ``require`` keeps rows whose boolean is true (a null, meaning 'nothing to compare', passes)."""

    key: str
    column: str
    kind: Literal["min", "require"]
    low: float | None = None
    high: float | None = None
    description: str = ""  # what the filter keeps, for the recipe reference


@dataclass(frozen=True)
class SummaryStat:
    """One statistic per split and class: ``mean``/``median`` of a numeric column, or ``share`` of true values of
    a boolean column (nulls left out; None when nothing is left)."""

    key: str
    header: str
    column: str
    reduce: Literal["mean", "median", "share"]
    fmt: str


@dataclass(frozen=True)
class CliOption:
    """A ``python -m eval`` option that sets one field of the scorer's settings (``repeat``: the option may be
    given several times and the field is a list)."""

    flag: str
    field: str
    help: str
    repeat: bool = False


class LoadedScorer(ABC):
    """A scorer's models on one device, ready for batches."""

    @abstractmethod
    def score(self, images: Images, labels: torch.Tensor, prompts: Sequence[str]) -> dict[str, list]:
        """Columns for a batch: ``images`` float (B, 3, H, W) in [0, 1] (or uint8, or a list of (3, H, W)) on the
        device, ``labels`` the true class indices on the device, ``prompts`` each image's text."""


class Scorer(ABC):
    """A scorer plug-in (stateless: one instance in the registry)."""

    name: ClassVar[str]
    Settings: ClassVar[type[ScorerSettings]]
    filters: ClassVar[tuple[FilterRule, ...]] = ()
    summary: ClassVar[tuple[SummaryStat, ...]] = ()
    cli_options: ClassVar[tuple[CliOption, ...]] = ()

    @abstractmethod
    def features(self, task: ScoringTask, settings: ScorerSettings) -> dict:
        """The columns it adds with these settings (name -> datasets feature), in order."""

    @abstractmethod
    def load(
        self, settings: ScorerSettings, task: ScoringTask, device: torch.device, dtype: torch.dtype
    ) -> LoadedScorer:
        """Its models on ``device``."""

    @abstractmethod
    def describe(self, settings: ScorerSettings) -> tuple[str, str]:
        """(role, model in Markdown) for the card's model table."""

    @abstractmethod
    def provenance(self, settings: ScorerSettings) -> dict:
        """What ``build_info.json`` records of its model (id and resolved commit, or weights name)."""

    def model_refs(self, settings: ScorerSettings) -> list[ModelNeed]:
        """Every model it loads, with the recipe key that chose it: checked (``synthcore.availability``) before
        any work starts, so a model that is missing, unreachable or not what it claims is one clear message."""
        return []
