"""ResNet50: ImageNet top-5 of every image, and whether it agrees with the class's ImageNet names.

Weights are a torchvision weights name (``IMAGENET1K_V2`` by default), a local checkpoint file (a plain state
dict of torchvision's ``resnet50``), or ``tiny-random``. Category names and preprocessing come from the weights
enum's metadata; a local checkpoint uses those of ``IMAGENET1K_V2`` (its categories are the same 1000 names).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import datasets
import torch
from pydantic import Field, field_validator

from eval.preprocess import Images, Preprocess
from eval.scorers.base import CliOption, FilterRule, LoadedScorer, Scorer, ScorerSettings, ScoringTask, SummaryStat
from synthcore.availability import CheckpointFile, ModelNeed, Shapes, TorchvisionWeights, module_shapes, shape_mismatch
from synthcore.cardmeta import md, model_link
from synthcore.model_refs import TINY_RANDOM, resolve

WEIGHT_NAMES = ("IMAGENET1K_V1", "IMAGENET1K_V2", "DEFAULT")
LOCAL_CHECKPOINT_WEIGHTS = "IMAGENET1K_V2"
TOP_K = 5
TINY_RANDOM_CROP = 32
DEFAULT_WEIGHTS = "IMAGENET1K_V2"
RESNET50_DOCS = "https://docs.pytorch.org/vision/stable/models/generated/torchvision.models.resnet50.html"


def weights_enum(ref: str):
    """The torchvision weights entry whose metadata (categories, transforms) applies to ``ref``."""
    from torchvision.models import ResNet50_Weights

    return ResNet50_Weights[ref if ref in WEIGHT_NAMES else LOCAL_CHECKPOINT_WEIGHTS]


@lru_cache(maxsize=1)
def imagenet_categories() -> tuple[str, ...]:
    """The 1000 ImageNet class names, from torchvision's metadata (nothing is downloaded)."""
    return tuple(weights_enum("DEFAULT").meta["categories"])


def load_resnet50(ref: str) -> torch.nn.Module:
    """torchvision's resnet50 with the named weights (downloaded by torchvision) or a local state dict."""
    from torchvision.models import resnet50

    if ref in WEIGHT_NAMES:
        return resnet50(weights=weights_enum(ref))
    path = resolve(ref, "resnet50.pt")
    with torch.device("meta"):  # no random init of weights the checkpoint replaces
        model = resnet50(weights=None)
    try:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), assign=True)
    except (RuntimeError, TypeError, AttributeError) as err:
        raise ValueError(f"{path}: not a state dict of torchvision's resnet50 ({err})") from None
    return model


def weights_preprocess(ref: str) -> Preprocess:
    """The resize, crop and normalization of the weights' own ``transforms()``, as torch operations.

    ``tiny-random`` keeps those values but scales the sizes down to a 32-pixel crop: its random weights see
    nothing at any size, and a full-size ResNet50 pass on a CPU would dominate the offline tests.
    """
    transforms = weights_enum(ref).transforms()
    scale = TINY_RANDOM_CROP / transforms.crop_size[0] if ref == TINY_RANDOM else 1
    return Preprocess(
        resize=tuple(round(size * scale) for size in transforms.resize_size),
        crop=tuple(round(size * scale) for size in transforms.crop_size),
        mean=tuple(transforms.mean),
        std=tuple(transforms.std),
        interpolation=transforms.interpolation,
    )


class ResNetSettings(ScorerSettings):
    weights: str = Field(
        default=DEFAULT_WEIGHTS,
        min_length=1,
        description="torchvision weights name (`IMAGENET1K_V1`, `IMAGENET1K_V2`, `DEFAULT`), a local checkpoint "
        "file (a "
        "`resnet50` state dict; categories and preprocessing of `IMAGENET1K_V2`), or `tiny-random`",
    )

    @field_validator("weights")
    @classmethod
    def _known_weights(cls, value: str) -> str:
        if value in (TINY_RANDOM, *WEIGHT_NAMES):
            return value
        if not Path(value).expanduser().is_file():
            raise ValueError(
                f"{value!r} is neither a torchvision ResNet50 weights name ({', '.join(WEIGHT_NAMES)}) "
                f"nor an existing checkpoint file, nor {TINY_RANDOM!r}"
            )
        return value


class ResNet50Scorer(Scorer):
    """ImageNet top-5 of a torchvision ResNet50, and whether it holds one of the class's ImageNet names."""

    name = "resnet50"
    Settings = ResNetSettings
    filters = (
        FilterRule(
            "require_imagenet_match",
            "resnet50_match",
            "require",
            description="keep rows whose ResNet50 top-5 holds one of the class's `imagenet_classes`; rows of classes "
            "without any pass",
        ),
    )
    summary = (SummaryStat("resnet50_agreement", "ResNet50 agree", "resnet50_match", "share", ".0%"),)
    cli_options = (
        CliOption(
            "--resnet50-weights",
            "weights",
            f"{', '.join(WEIGHT_NAMES)} (default {DEFAULT_WEIGHTS}), a state-dict file, or tiny-random",
        ),
    )

    def features(self, task: ScoringTask, settings: ResNetSettings) -> dict:
        return {
            "resnet50_top5_ids": datasets.Sequence(datasets.Value("int32")),
            "resnet50_top5_labels": datasets.Sequence(datasets.Value("string")),
            "resnet50_top5_probs": datasets.Sequence(datasets.Value("float32")),
            "resnet50_match": datasets.Value("bool"),
        }

    def load(
        self, settings: ResNetSettings, task: ScoringTask, device: torch.device, dtype: torch.dtype
    ) -> LoadedResNet50:
        return LoadedResNet50(settings.weights, task.imagenet_classes, device, dtype)

    def describe(self, settings: ResNetSettings) -> tuple[str, str]:
        weights = settings.weights
        if weights == TINY_RANDOM:
            model = model_link(TINY_RANDOM)
        elif weights not in WEIGHT_NAMES:
            model = f"torchvision ResNet50, local checkpoint `{md(Path(weights).name)}`"
        else:
            model = f"[torchvision ResNet50, `ResNet50_Weights.{weights}`]({RESNET50_DOCS})"
        return "ResNet50 (ImageNet top-5)", model

    def provenance(self, settings: ResNetSettings) -> dict:
        return {"weights": settings.weights}

    def model_refs(self, settings: ResNetSettings) -> list[ModelNeed]:
        weights, key = settings.weights, "scoring.resnet50.weights"
        if weights == TINY_RANDOM:
            return []
        if weights in WEIGHT_NAMES:
            url = weights_enum(weights).url
            return [
                TorchvisionWeights(key, weights, "torchvision ResNet50 weights file", url, f", or to {TINY_RANDOM!r}")
            ]
        return [CheckpointFile(key, weights, "state dict of torchvision's resnet50", resnet50_mismatch)]


def resnet50_mismatch(shapes: Shapes) -> str | None:
    """How a checkpoint's tensors differ from torchvision's resnet50 (built on the meta device: no memory)."""
    from torchvision.models import resnet50

    with torch.device("meta"):
        expected = module_shapes(resnet50(weights=None))
    return shape_mismatch(shapes, expected)


class LoadedResNet50(LoadedScorer):
    """The ``resnet50_*`` columns of a batch."""

    def __init__(
        self, weights: str, imagenet_classes: Sequence[Sequence[str]], device: str | torch.device, dtype: torch.dtype
    ):
        self.dtype = dtype
        self.model = load_resnet50(weights).to(device=device, dtype=dtype).eval()
        self.preprocess = weights_preprocess(weights)
        self.categories = list(weights_enum(weights).meta["categories"])
        index = {name: i for i, name in enumerate(self.categories)}
        self.mapped = [bool(names) for names in imagenet_classes]
        targets = torch.zeros(len(imagenet_classes), len(self.categories), dtype=torch.bool)
        for label, names in enumerate(imagenet_classes):
            targets[label, [index[name] for name in names]] = True
        self.targets = targets.to(device)

    @torch.inference_mode()
    def score(self, images: Images, labels: torch.Tensor, prompts: Sequence[str] = ()) -> dict[str, list]:
        probs = self.model(self.preprocess(images, self.dtype)).float().softmax(dim=-1)
        top = probs.topk(TOP_K, dim=-1)
        match = self.targets[labels].gather(1, top.indices).any(dim=-1)
        ids = top.indices.tolist()
        return {
            "resnet50_top5_ids": ids,
            "resnet50_top5_labels": [[self.categories[i] for i in row] for row in ids],
            "resnet50_top5_probs": top.values.tolist(),
            "resnet50_match": [m if self.mapped[label] else None for m, label in zip(match.tolist(), labels.tolist())],
        }
