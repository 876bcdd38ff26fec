"""Frozen-backbone features, computed once per image and cached on disk.

A linear probe never changes the backbone, so every epoch would recompute the same features. They are computed
once (batched, eval mode, no autograd) and stored as safetensors under a key made of the split's datasets
fingerprint (which changes when the data files, or the filter applied to them, change) and the backbone's
identity (a digest of its weights and preprocessing). Later runs, any number of epochs, read them back.

Under ``accelerate launch`` each process extracts a contiguous share of the images (``split_between_processes``)
into a part file; the main process joins the parts in order into the cache entry.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from training.backbone import FEATURE_DIM
from training.config import TrainConfig
from training.data import Split, image_loader


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
    # this entry before that decision.
    hit = broadcast_object_list([path.is_file()])[0]
    if not hit:
        _extract_to_cache(split, backbone, transform, config, path, state)
    cached = load_file(path)
    return cached["features"], cached["labels"], hit


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
        save_file({key: torch.cat([p[key] for p in parts]) for key in ("features", "labels")}, staging)
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
