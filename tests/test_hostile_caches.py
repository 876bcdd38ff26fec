"""The probe's feature cache, read back: an entry that is not its split's, whole, is computed again, never trained on
(fewer rows, other labels, wrong shapes, altered values, bytes that are no safetensors).

``training.features.split_features`` runs as the probe runs it, on a real dataset and a real (tiny, fixed) torch
backbone, in one process."""

from __future__ import annotations

import io
from pathlib import Path

import datasets
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from torch import nn
from torchvision.transforms import v2

from synthcore.launch import start_state
from training.backbone import FEATURE_DIM
from training.config import TrainConfig
from training.data import Split
from training.features import cache_file, entry_digest, split_features

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (250, 10, 10), (10, 250, 10), (10, 10, 250)]


def png(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def setting(tmp_path: Path):
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["r", "g", "b"])})
    rows = {"image": [{"bytes": png(c), "path": None} for c in COLOURS], "label": [0, 1, 2, 0, 1, 2]}
    split = Split("train", datasets.Dataset.from_dict(rows, features=features))
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, FEATURE_DIM))
    transform = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])
    config = TrainConfig(dataset="colours", output_dir=str(tmp_path / "out"), batch_size=4)
    return split, backbone, transform, config, tmp_path / "cache"


def features_of(setting) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """The split's features, labels and whether the cache had them (copies: the tests overwrite entries in place,
    which would pull the mapped file from under tensors read from it)."""
    split, backbone, transform, config, cache = setting
    features, labels, hit = split_features(split, backbone, transform, "tiny", config, cache, start_state())
    return features.clone(), labels.clone(), hit


def entry(setting) -> Path:
    split, _, _, config, cache = setting
    return cache_file(cache, split, "tiny", config)


def altered(features: torch.Tensor, labels: torch.Tensor) -> dict[str, dict]:
    """Entries a user, a crash or another version could leave, keyed by what is wrong with them."""
    tweaked = features.clone()
    tweaked[0, 0] += 1
    return {
        "fewer rows": {"features": features[:4], "labels": labels[:4]},
        "other labels": {"features": features, "labels": labels.flip(0)},
        "wrong width": {"features": features[:, :7].contiguous(), "labels": labels},
        "labels as floats": {"features": features, "labels": labels.float()},
        "altered values": {"features": tweaked, "labels": labels, "digest": entry_digest(features, labels)},
        "no digest": {"features": features, "labels": labels, "digest": None},
    }


def test_a_cached_entry_is_read_back_when_it_is_the_splits(setting):
    features, labels, hit = features_of(setting)
    assert not hit and features.shape == (6, FEATURE_DIM) and labels.tolist() == [0, 1, 2, 0, 1, 2]
    again, again_labels, hit = features_of(setting)
    assert hit and torch.equal(again, features) and torch.equal(again_labels, labels)


@pytest.mark.parametrize("case", list(altered(torch.zeros(6, FEATURE_DIM), torch.arange(6))))
def test_an_entry_that_is_not_the_splits_is_computed_again(setting, case):
    features, labels, _ = features_of(setting)
    tensors = altered(features, labels)[case]
    digest = tensors.pop("digest") if "digest" in tensors else entry_digest(tensors["features"], tensors["labels"])
    save_file(tensors, entry(setting), metadata={"digest": digest} if digest else None)
    recomputed, recomputed_labels, hit = features_of(setting)
    assert not hit and torch.equal(recomputed, features) and torch.equal(recomputed_labels, labels)
    assert features_of(setting)[2]  # the entry was written again, whole


@pytest.mark.parametrize("content", [b"", b"not safetensors at all", b"\xff" * 64])
def test_an_entry_that_is_no_safetensors_is_computed_again(setting, content):
    features, _, _ = features_of(setting)
    entry(setting).write_bytes(content)
    recomputed, _, hit = features_of(setting)
    assert not hit and torch.equal(recomputed, features)
