"""Linear probe: cached features vs. the naive loop that runs the frozen backbone every epoch.

Both train the same head with the same epoch loop (``training.train.fit``) on the same images, read from a
Parquet dataset written here. "cached" extracts the features once (``training.features.extract``) and trains on
them; "naive" decodes, preprocesses and pushes every image through the frozen backbone in every epoch. The last
line ends with the speed-up ratio (naive / cached).

    python benchmarks/probe.py [--images-per-class 32] [--classes 2] [--epochs 10] [--image-size 128]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np
import torch
from PIL import Image
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.backbone import feature_extractor  # noqa: E402
from training.classifier import new_resnet18_classifier  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.data import image_loader  # noqa: E402
from training.features import ForwardCounter, extract  # noqa: E402
from training.train import fit  # noqa: E402


class NaiveProbe(nn.Module):
    """The frozen backbone (eval mode, no autograd) on every batch of every epoch, then the trainable head."""

    def __init__(self, body: nn.Module, head: nn.Module):
        super().__init__()
        self.body, self.head = body, head

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        self.body.eval()
        with torch.no_grad():
            features = self.body(pixel_values)
        return self.head(features)


def write_dataset(root: Path, classes: int, per_class: int, size: int) -> datasets.Dataset:
    """Noisy solid-colour PNGs, one colour per class, as a Parquet split read back with load_dataset."""
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, (classes, 3))
    images = [
        Image.fromarray(np.clip(c + rng.normal(0, 40, (size, size, 3)), 0, 255).astype(np.uint8))
        for c in colours
        for _ in range(per_class)
    ]
    labels = [k for k in range(classes) for _ in range(per_class)]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=classes)})
    datasets.Dataset.from_dict({"image": images, "label": labels}, features=features).to_parquet(
        str(root / "data" / "train-00000-of-00001.parquet")
    )
    return datasets.load_dataset(str(root), split="train")


def time_cached(dataset, config: TrainConfig, classes: list[str], device) -> tuple[float, int]:
    model = new_resnet18_classifier(config.backbone_weights, classes, config.seed).to(device)
    body = feature_extractor(model.net).requires_grad_(False)
    counter = ForwardCounter(body)
    started = time.perf_counter()
    x, y = extract(dataset, body, model.transform, config, device, show=False)
    x, y = x.to(device), y.to(device)
    shuffle = torch.Generator().manual_seed(0)

    def batches():
        order = torch.randperm(len(x), generator=shuffle).to(device)
        return ((x[i], y[i]) for i in order.split(config.batch_size))

    fit(model.net.fc, batches, None, [], classes, config)
    _sync(device)
    return time.perf_counter() - started, counter.images


def time_naive(dataset, config: TrainConfig, classes: list[str], device) -> tuple[float, int]:
    model = new_resnet18_classifier(config.backbone_weights, classes, config.seed).to(device)
    body = feature_extractor(model.net).requires_grad_(False)
    counter = ForwardCounter(body)
    loader = image_loader(dataset, config, model.transform, shuffle=True)
    started = time.perf_counter()
    fit(
        NaiveProbe(body, model.net.fc),
        lambda: ((b["pixel_values"].to(device), b["label"].to(device)) for b in loader),
        None,
        [],
        classes,
        config,
    )
    _sync(device)
    return time.perf_counter() - started, counter.images


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images-per-class", type=int, default=32)
    parser.add_argument("--classes", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--image-size", type=int, default=128, help="side of the stored images (preprocessing makes them 224)"
    )
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--backbone-weights", default="none", help="none (no download) or a ResNet18_Weights name")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        dataset = write_dataset(Path(tmp), args.classes, args.images_per_class, args.image_size)
        classes = dataset.features["label"].names
        config = TrainConfig(
            dataset=tmp,
            output_dir=tmp,
            epochs=args.epochs,
            batch_size=args.batch_size,
            backbone_weights=args.backbone_weights,
            num_workers=args.num_workers,
        )
        cached_s, cached_images = time_cached(dataset, config, classes, args.device)
        naive_s, naive_images = time_naive(dataset, config, classes, args.device)

    print(
        f"ResNet18 linear probe, {len(dataset)} images ({args.image_size}px stored, 224px in), {args.epochs} epochs, "
        f"batch {args.batch_size}, device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(f"{'method':<18}{'backbone images':>16}{'seconds':>10}{'images/s':>10}")
    for name, seconds, images in (("cached features", cached_s, cached_images), ("naive loop", naive_s, naive_images)):
        print(f"{name:<18}{images:>16}{seconds:>10.2f}{len(dataset) * args.epochs / seconds:>10.1f}")
    print(f"speed-up of the feature cache over the naive loop (naive / cached): {naive_s / cached_s:.1f}")


if __name__ == "__main__":
    main()
