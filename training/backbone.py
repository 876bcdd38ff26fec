"""The ResNet18 backbone: where its weights come from, its preprocessing, and an identity for the feature cache.

``--backbone-weights`` is a torchvision ``ResNet18_Weights`` name (loaded through the weights enum), ``none``
(random init from the run's seed) or a local checkpoint (a state dict, ``.pt``/``.pth`` or ``.safetensors``).
Preprocessing is always the weights enum's own transform; for ``none`` and local checkpoints it is
``IMAGENET1K_V1``'s, the values ResNet18 checkpoints are trained with.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn
from torchvision.models import ResNet18_Weights, resnet18
from torchvision.transforms import v2

from synthcore.availability import CheckpointFile, ModelNeed, Shapes, TorchvisionWeights, module_shapes, shape_mismatch
from training.config import DEFAULT_BACKBONE, TrainingError

RANDOM_INIT = "none"
FEATURE_DIM = 512
OPTION = "--backbone-weights"


def is_enum_weights(ref: str) -> bool:
    """Weights torchvision can fetch again by name (so a saved classifier need not carry the backbone)."""
    return ref in ResNet18_Weights.__members__


def eval_transform(ref: str):
    """The weights' own preprocessing (resize 256, center crop 224, ImageNet mean/std), PIL or tensor in."""
    weights = ResNet18_Weights[ref] if is_enum_weights(ref) else ResNet18_Weights[DEFAULT_BACKBONE]
    return weights.transforms()


def train_transform(ref: str):
    """Augmentation for fine-tuning: random resized crop and flip at the eval transform's size and normalisation."""
    preset = eval_transform(ref)
    return v2.Compose(
        [
            v2.ToImage(),
            v2.RandomResizedCrop(preset.crop_size, interpolation=preset.interpolation, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(preset.mean, preset.std),
        ]
    )


def backbone_needs(ref: str) -> list[ModelNeed]:
    """The backbone's weights, checked before any work starts (``synthcore.availability``)."""
    if is_enum_weights(ref):
        url = ResNet18_Weights[ref].url
        return [
            TorchvisionWeights(
                OPTION, ref, "torchvision ResNet18 weights file", url, f", or to {RANDOM_INIT!r} (random init)"
            )
        ]
    if ref == RANDOM_INIT:
        return []
    _check_is_file(Path(ref).expanduser())
    return [CheckpointFile(OPTION, ref, "ResNet18 state dict", resnet18_mismatch)]


def resnet18_mismatch(shapes: Shapes) -> str | None:
    """How a checkpoint's tensors differ from ResNet18's, ``fc`` aside (it is replaced by the head)."""
    with torch.device("meta"):
        expected = module_shapes(resnet18(weights=None))
    return shape_mismatch(shapes, expected, ignore_prefix="fc.")


def build_resnet18(ref: str, seed: int = 0) -> nn.Module:
    """ResNet18 with the requested weights; its ``fc`` is still ImageNet's and is replaced by the caller."""
    if is_enum_weights(ref):
        return resnet18(weights=ResNet18_Weights[ref])
    if ref == RANDOM_INIT:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return resnet18(weights=None)
    return _from_checkpoint(Path(ref).expanduser())


def _check_is_file(path: Path) -> None:
    if not path.is_file():
        raise TrainingError(
            f"{OPTION}: {str(path)!r} is neither a torchvision ResNet18_Weights name "
            f"({', '.join(ResNet18_Weights.__members__)}), nor {RANDOM_INIT!r}, nor an existing checkpoint file"
        )


def _from_checkpoint(path: Path) -> nn.Module:
    _check_is_file(path)
    state = _read_state_dict(path)
    model = resnet18(weights=None)
    body = {k: v for k, v in state.items() if not k.startswith("fc.")}  # the head is replaced anyway
    try:
        missing, unexpected = model.load_state_dict(body, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise TrainingError(f"--backbone-weights: {path} is not a ResNet18 state dict: {err}") from None
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise TrainingError(
            f"--backbone-weights: {path} is not a ResNet18 state dict "
            f"(missing {missing[:3]}{'...' * (len(missing) > 3)}, unexpected "
            f"{unexpected[:3]}{'...' * (len(unexpected) > 3)})"
        )
    return model


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(path)
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise TrainingError(f"--backbone-weights: cannot read checkpoint {path}: {err}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise TrainingError(f"--backbone-weights: {path} holds a {type(state).__name__}, expected a state dict")
    return state


def backbone_identity(backbone: nn.Module, transform) -> str:
    """A digest of the backbone's weights (ignoring ``fc``) and its preprocessing: the features' provenance."""
    digest = hashlib.sha256(repr(transform).encode())
    for name, tensor in sorted(backbone.state_dict().items()):
        if not name.startswith("fc."):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def feature_extractor(net: nn.Module) -> nn.Module:
    """The network up to (not including) ``fc``: the 512-d pooled features, sharing the same parameters."""
    return nn.Sequential(*list(net.children())[:-1], nn.Flatten(1))
