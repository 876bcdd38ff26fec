"""Frozen-backbone features, computed once per image and cached on disk.

A linear probe never changes the backbone, so every epoch would recompute the same features. They are computed
once (batched, eval mode, no autograd) and stored as safetensors under a key made of the split's datasets
fingerprint (which changes when the data files, or the filter applied to them, change) and the backbone's
identity (a digest of its weights and preprocessing). Later runs, any number of epochs, read them back, once the
entry is checked against its split (``read_entry``: one feature row per row, the split's labels in order, the
digest written with it); an entry that fails is computed again, never trained on.

Under ``accelerate launch`` each process extracts a contiguous share of the images (``split_between_processes``)
into a part file; the main process joins the parts in order into the cache entry.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from synthcore.hub import describe_error
from training.backbone import FEATURE_DIM
from training.config import TrainConfig
from training.data import Split, image_loader

log = logging.getLogger("synthdata.training")


class ForwardCounter:
    """Counts the images that go through a module (a forward hook), so a run can report the backbone's work."""

    def __init__(self, module: nn.Module):
        self.images = 0
        module.register_forward_hook(self._count)

    def _count(self, module, inputs, output) -> None:
        self.images += inputs[0].shape[0]


def cache_file(cache_dir: Path, split: Split, backbone_id: str, config: TrainConfig) -> Path:
    parts = (split.dataset._fingerprint, backbone_id, config.image_column, config.label_column)
    return cache_dir / f"{hashlib.sha256(chr(0).join(parts).encode()).hexdigest()[:32]}.safetensors"


def split_features(
    split: Split, backbone: nn.Module, transform, backbone_id: str, config: TrainConfig, cache_dir: Path, state
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """(features, dataset labels, whether the cache had them); every process gets the full tensors."""
    path = cache_file(cache_dir, split, backbone_id, config)
    from accelerate.utils import broadcast_object_list

    # The main process decides for all (ranks that disagreed would wait at different barriers), and nobody writes
    # this entry before that decision. An entry that is not this split's, whole, is computed again.
    entry = read_entry(path, split_labels(split, config)) if state.is_main_process else None
    hit = broadcast_object_list([entry is not None])[0]
    if not hit:
        _extract_to_cache(split, backbone, transform, config, path, state)
    features, labels = entry or _load(path)
    return features, labels, hit


def split_labels(split: Split, config: TrainConfig) -> torch.Tensor:
    """The split's own label indices, in row order: what a cache entry of it must hold beside its features."""
    return torch.tensor(split.dataset.with_format("arrow")[config.label_column].to_numpy(), dtype=torch.int64)


def entry_digest(features: torch.Tensor, labels: torch.Tensor) -> str:
    """A digest of an entry's tensors, stored in its metadata: a damaged or altered entry no longer matches."""
    digest = hashlib.sha256(features.contiguous().numpy().tobytes())
    digest.update(labels.contiguous().numpy().tobytes())
    return digest.hexdigest()


def read_entry(path: Path, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The cache entry at ``path`` when it is whole and this split's: one feature row of the backbone's width per
    row, the split's labels in order, and the digest it was written with; otherwise None (said in the log)."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as file:
            digest = (file.metadata() or {}).get("digest")
            features, stored = file.get_tensor("features"), file.get_tensor("labels")
    except Exception as err:  # noqa: BLE001 - not safetensors, truncated, a tensor missing: all are recomputed
        log.warning("feature cache %s cannot be read (%s): computing it again", path, describe_error(err))
        return None
    if (problem := _entry_problem(features, stored, labels, digest)) is not None:
        log.warning("feature cache %s %s: computing it again", path, problem)
        return None
    return features, stored


def _entry_problem(features: torch.Tensor, stored: torch.Tensor, labels: torch.Tensor, digest: str | None):
    if features.dtype != torch.float32 or features.ndim != 2 or features.shape[1] != FEATURE_DIM:
        return f"holds features of shape {tuple(features.shape)} ({features.dtype}), not (rows, {FEATURE_DIM})"
    if stored.dtype != torch.int64 or stored.shape != labels.shape or len(features) != len(labels):
        return f"holds {len(features)} feature rows and {tuple(stored.shape)} labels; the split has {len(labels)} rows"
    if not torch.equal(stored, labels):
        return "holds other labels than the split's"
    if digest != entry_digest(features, stored):
        return "does not match its digest (damaged or altered)"
    return None


def _load(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    cached = load_file(path)
    return cached["features"], cached["labels"]


def _extract_to_cache(split: Split, backbone: nn.Module, transform, config: TrainConfig, path: Path, state) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f"{path.stem}.part{state.process_index}")
    with state.split_between_processes(list(range(len(split.dataset)))) as mine:
        features, labels = extract(
            split.dataset.select(mine),
            backbone,
            transform,
            config,
            state.device,
            desc=f"features {split.name}",
            show=state.is_main_process,
        )
    save_file({"features": features, "labels": labels}, part)
    state.wait_for_everyone()
    if state.is_main_process:
        parts = [load_file(path.with_name(f"{path.stem}.part{rank}")) for rank in range(state.num_processes)]
        staging = path.with_name(f"{path.stem}.tmp{os.getpid()}")
        whole = {key: torch.cat([p[key] for p in parts]).contiguous() for key in ("features", "labels")}
        save_file(whole, staging, metadata={"digest": entry_digest(whole["features"], whole["labels"])})
        os.replace(staging, path)  # atomic: a reader sees a whole entry or none
        for rank in range(state.num_processes):
            path.with_name(f"{path.stem}.part{rank}").unlink()
    state.wait_for_everyone()


@torch.inference_mode()
def extract(
    dataset, backbone: nn.Module, transform, config: TrainConfig, device, desc: str = "features", show: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Backbone outputs (``fc`` is ``Identity``: the 512-d pooled features) and labels of every image, in order."""
    backbone.eval()
    features, labels = [torch.empty(0, FEATURE_DIM)], [torch.empty(0, dtype=torch.int64)]
    for batch in tqdm(image_loader(dataset, config, transform), desc=desc, disable=not show or len(dataset) == 0):
        features.append(backbone(batch["pixel_values"].to(device)).float().cpu())
        labels.append(batch["label"])
    return torch.cat(features).contiguous(), torch.cat(labels).to(torch.int64)
