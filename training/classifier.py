"""The trained classifier as a ready ``nn.Module``: saved as safetensors plus a config naming the classes.

A directory holds ``config.json`` (classes, backbone weights, mode, preprocessing), ``head.safetensors`` (the
trained ``fc``) and, when the backbone cannot be fetched again by its torchvision name (fine-tuning, random
init, a local checkpoint), ``model.safetensors`` with the whole network. ``load_classifier(DIR)`` rebuilds it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import load_file, save
from torch import nn

from training.backbone import FEATURE_DIM, build_resnet18, eval_transform, is_enum_weights
from training.config import TrainingError

CONFIG_FILE = "config.json"
HEAD_FILE = "head.safetensors"
MODEL_FILE = "model.safetensors"


class ImageClassifier(nn.Module):
    """ResNet18 with a head over ``classes``: ``forward`` maps preprocessed pixels to logits, ``predict`` maps
    images (PIL or CHW tensors) to class names."""

    def __init__(self, net: nn.Module, classes: list[str], backbone_weights: str):
        super().__init__()
        self.net = net
        self.classes = list(classes)
        self.backbone_weights = backbone_weights
        self.transform = eval_transform(backbone_weights)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.net(pixel_values)

    def preprocess(self, images) -> torch.Tensor:
        """The backbone weights' own preprocessing, batched; PIL images of any mode are made RGB first."""
        images = images if isinstance(images, (list, tuple)) else [images]
        return torch.stack([self.transform(im.convert("RGB") if isinstance(im, Image.Image) else im) for im in images])

    @torch.inference_mode()
    def predict(self, images) -> list[str]:
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        logits = self(self.preprocess(images).to(device))
        self.train(was_training)
        return [self.classes[i] for i in logits.argmax(dim=1).tolist()]


def new_resnet18_classifier(backbone_weights: str, classes: list[str], seed: int) -> ImageClassifier:
    """The backbone with its ImageNet ``fc`` replaced by a freshly initialised one over ``classes``."""
    net = build_resnet18(backbone_weights, seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net.fc = nn.Linear(FEATURE_DIM, len(classes))
    return ImageClassifier(net, classes, backbone_weights)


def save_classifier(model: ImageClassifier, directory: Path, mode: str) -> list[str]:
    """Write the classifier; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.net.state_dict().items()}
    _save_tensors({k.removeprefix("fc."): v for k, v in state.items() if k.startswith("fc.")}, directory / HEAD_FILE)
    files = [HEAD_FILE]
    whole = mode == "finetune" or not is_enum_weights(model.backbone_weights)
    if whole:
        _save_tensors(state, directory / MODEL_FILE)
        files.append(MODEL_FILE)
    preset = model.transform
    config = {
        "architecture": "resnet18",
        "classes": model.classes,
        "mode": mode,
        "backbone_weights": model.backbone_weights,
        "weights_file": MODEL_FILE if whole else HEAD_FILE,
        "preprocessing": {
            "resize_size": preset.resize_size,
            "crop_size": preset.crop_size,
            "mean": preset.mean,
            "std": preset.std,
            "interpolation": preset.interpolation.value,
        },
    }
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
    return [*files, CONFIG_FILE]


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """A safetensors file with the permissions of every other output (the umask's): safetensors' own
    ``save_file`` creates it readable by its owner alone (0600)."""
    path.write_bytes(save(tensors))


def load_classifier(directory: str | Path, device: str | torch.device = "cpu") -> ImageClassifier:
    """A ready classifier (eval mode) from a directory written by ``python -m training``."""
    directory = Path(directory)
    try:
        config = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise TrainingError(f"{directory / CONFIG_FILE}: cannot read the classifier config: {err}") from None
    whole = config["weights_file"] == MODEL_FILE
    net = build_resnet18("none" if whole else config["backbone_weights"])
    net.fc = nn.Linear(FEATURE_DIM, len(config["classes"]))
    if whole:
        net.load_state_dict(load_file(directory / MODEL_FILE))
    else:
        net.fc.load_state_dict(load_file(directory / HEAD_FILE))
    return ImageClassifier(net, config["classes"], config["backbone_weights"]).to(device).eval()
