"""The training run, top to bottom: data, model, features, epochs, outputs.

Linear probe (default): the backbone is frozen, so its features are computed once per image and cached
(``training/features.py``); the epochs train only ``fc`` on those feature tensors, and evaluating every split
each epoch costs one matrix product. Fine-tuning (``--mode finetune``): every layer trains on augmented images
(random resized crop and flip), evaluated with the weights' own preprocessing.

Under ``accelerate launch`` the device is accelerate's; in probe mode feature extraction is split between the
processes and the (tiny) head trains on the main process; fine-tuning runs on the main process alone.

The output directory follows ``synthcore.outdir``: new, empty or an earlier output of ``python -m training`` (which
a new run replaces). The main process claims it before any work and publishes every output at the end, so a run
that fails leaves it as it was.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from synthcore.image_hashes import reference_hashes, shared_images
from synthcore.launch import start_state
from synthcore.outdir import OwnedDir, Tool, check, claimed
from synthcore.tiny import cache_root
from training.backbone import backbone_identity, feature_extractor, train_transform
from training.classifier import (
    CONFIG_FILE,
    HEAD_FILE,
    MODEL_FILE,
    ImageClassifier,
    new_resnet18_classifier,
    save_classifier,
)
from training.config import TrainConfig, TrainingError
from training.data import (
    Split,
    class_names,
    default_eval_splits,
    image_loader,
    keep_min_scores,
    label_lookup,
    load_splits,
    pick,
)
from training.evaluation import compute_metrics
from training.features import ForwardCounter, split_features
from training.hub import CARD_FILE, push_classifier, write_model_card
from training.report import (
    CURVES_FILE,
    METRICS_FILE,
    epoch_line,
    final_table,
    plot_confusion,
    plot_curves,
    write_metrics,
)

log = logging.getLogger("synthdata.training")

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]

TRAINING_OUTPUT = Tool(
    "python -m training",
    (CARD_FILE, CONFIG_FILE, HEAD_FILE, MODEL_FILE, METRICS_FILE, CURVES_FILE, "confusion_*.png"),
)


def run(config: TrainConfig) -> dict | None:
    """Train and evaluate; returns the metrics written to ``metrics.json`` (None on non-main processes)."""
    started = time.perf_counter()
    state = start_state()
    check(config.output_dir, TRAINING_OUTPUT)  # every process alike, before any work
    state.wait_for_everyone()  # and before the main process creates anything there
    with claimed(config.output_dir, TRAINING_OUTPUT) if state.is_main_process else nullcontext() as owned:
        return _run(config, state, owned, started)


def _run(config: TrainConfig, state, owned: OwnedDir | None, started: float) -> dict | None:
    train, evals, classes = load_data(config)
    model = new_resnet18_classifier(config.backbone_weights, classes, config.seed).to(state.device)
    if config.mode == "probe":
        result = train_probe(model, train, evals, classes, config, state)
    else:
        result = train_finetune(model, train, evals, classes, config, state) if state.is_main_process else None
    if result is None:
        return None
    metrics = {
        "config": config.model_dump(),
        "classes": classes,
        "train_rows": len(train.dataset),
        **result,
        "seconds": round(time.perf_counter() - started, 3),
    }
    write_outputs(model, metrics, config, owned)
    return metrics


def load_data(config: TrainConfig) -> tuple[Split, list[Split], list[str]]:
    """The (filtered) training split, every eval split (labels mapped to ours) and the class names."""
    splits = load_splits(config.dataset)
    train_ds = pick(splits, config.train_split, config.dataset)
    classes = class_names(train_ds, config, config.dataset, config.train_split)
    train_ds = keep_min_scores(train_ds, config.min_scores, f"{config.dataset} [{config.train_split}]")
    if len(train_ds) == 0:
        raise TrainingError(
            f"{config.dataset} [{config.train_split}]: no rows left to train on after the score filters "
            f"{config.min_scores}"
        )
    evals = []
    for name in config.eval_splits or default_eval_splits(splits, config.train_split):
        source = f"{config.dataset} [{name}]"
        dataset = pick(splits, name, config.dataset)
        theirs = class_names(dataset, config, config.dataset, name)
        evals.append(Split(name, dataset, label_lookup(theirs, classes, {}, source)))
    if config.label_map and not config.eval_dataset:
        raise TrainingError("--label-map maps the labels of --eval-dataset, which is not given")
    if config.eval_dataset:
        other = load_splits(config.eval_dataset)
        for name in config.eval_dataset_splits or list(other):
            source = f"{config.eval_dataset} [{name}]"
            dataset = pick(other, name, config.eval_dataset)
            theirs = class_names(dataset, config, config.eval_dataset, name)
            lookup = label_lookup(theirs, classes, config.label_map, source)
            refuse_reference_photos(splits, dataset, config.image_column, source)
            evals.append(Split(f"{Path(config.eval_dataset).name}/{name}", dataset, lookup))
    return Split(config.train_split, train_ds), evals, classes


def refuse_reference_photos(splits, dataset, image_column: str, source: str) -> None:
    """An evaluation split may not hold the real photos the training dataset was made from (real-image guidance):
    a classifier evaluated on them is measured on what steered its training images."""
    shared = shared_images(reference_hashes(splits.values()), dataset, image_column)
    if shared:
        raise TrainingError(
            f"{source}: {len(shared)} image(s) (rows {shared[:5]}{' …' if len(shared) > 5 else ''}) are reference "
            "photos the training dataset's images were made from (their SHA-256 is in its reference_sha256 "
            "column): evaluating on them measures memory, not generalisation; leave them out of the evaluation set"
        )


def train_probe(
    model: ImageClassifier, train: Split, evals: list[Split], classes: list[str], config: TrainConfig, state
) -> dict | None:
    """Features once (cached), then epochs of the head alone on them."""
    body = feature_extractor(model.net).requires_grad_(False)
    counter = ForwardCounter(body)
    backbone_id = backbone_identity(model.net, model.transform)
    cache_dir = Path(config.cache_dir) if config.cache_dir else cache_root() / "probe-features"
    started = time.perf_counter()
    features, cache = [], {}
    for split in [train, *evals]:
        x, y, hit = split_features(split, body, model.transform, backbone_id, config, cache_dir, state)
        features.append((x.to(state.device), split.our_labels(y).to(state.device)))
        cache[split.name] = "hit" if hit else "miss"
        if state.is_main_process:
            log.info("features of %s: %d images, cache %s", split.name, len(x), cache[split.name])
    if not state.is_main_process:
        return None
    feature_seconds = time.perf_counter() - started

    (train_x, train_y), eval_features = features[0], features[1:]
    shuffle = torch.Generator().manual_seed(config.seed)

    def train_batches() -> Batches:
        order = torch.randperm(len(train_x), generator=shuffle).to(state.device)
        return ((train_x[i], train_y[i]) for i in order.split(config.batch_size))

    def eval_outputs(index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = eval_features[index]
        return model.net.fc(x), y

    epochs = fit(model.net.fc, train_batches, eval_outputs, evals, classes, config)
    return {
        "epochs": epochs,
        "final": epochs[-1]["eval"],
        "feature_cache": cache,
        "backbone_images": counter.images,
        "feature_seconds": round(feature_seconds, 3),
    }


def train_finetune(
    model: ImageClassifier, train: Split, evals: list[Split], classes: list[str], config: TrainConfig, state
) -> dict:
    """Every layer trains, on augmented images; each epoch evaluates the whole model on every eval split."""
    device = state.device
    loader = image_loader(train.dataset, config, train_transform(config.backbone_weights), shuffle=True)

    def train_batches() -> Batches:
        for batch in tqdm(loader, desc="fine-tuning", leave=False):
            yield batch["pixel_values"].to(device), train.our_labels(batch["label"]).to(device)

    def eval_outputs(index: int) -> tuple[torch.Tensor, torch.Tensor]:
        split = evals[index]
        batches = [
            (model(b["pixel_values"].to(device)), split.our_labels(b["label"]).to(device))
            for b in image_loader(split.dataset, config, model.transform)
        ]
        return torch.cat([logits for logits, _ in batches]), torch.cat([labels for _, labels in batches])

    epochs = fit(model, train_batches, eval_outputs, evals, classes, config)
    return {"epochs": epochs, "final": epochs[-1]["eval"]}


def fit(
    trainable: nn.Module,
    train_batches: Callable[[], Batches],
    eval_outputs: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
    evals: list[Split],
    classes: list[str],
    config: TrainConfig,
) -> list[dict]:
    """The epoch loop of both modes: SGD with momentum on cross-entropy, then every eval split's metrics."""
    optimizer = torch.optim.SGD(
        [p for p in trainable.parameters() if p.requires_grad], lr=config.lr, momentum=config.momentum
    )
    records = []
    for epoch in range(1, config.epochs + 1):
        trainable.train()
        seen = loss_sum = correct = 0
        for inputs, labels in train_batches():
            logits = trainable(inputs)
            loss = F.cross_entropy(logits, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(labels)
            loss_sum += loss.item() * len(labels)
            correct += (logits.argmax(dim=1) == labels).sum().item()
        trainable.eval()
        with torch.inference_mode():
            results = {split.name: split_metrics(*eval_outputs(i), classes) for i, split in enumerate(evals)}
        records.append(
            {"epoch": epoch, "train": {"loss": loss_sum / seen, "accuracy": correct / seen}, "eval": results}
        )
        log.info(epoch_line(records[-1], config.epochs))
    return records


def split_metrics(logits: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> dict:
    return {
        "loss": F.cross_entropy(logits, labels).item(),
        **compute_metrics(logits.argmax(dim=1).tolist(), labels.tolist(), classes),
    }


def write_outputs(model: ImageClassifier, metrics: dict, config: TrainConfig, owned: OwnedDir) -> None:
    """Classifier, metrics, plots and model card, written beside the output directory and published into it; then
    the optional Hub push, from the published directory (a failed push keeps them)."""
    with owned.staging() as stage:
        save_classifier(model, stage, config.mode)
        write_metrics(stage, metrics)
        plot_curves(stage, metrics["epochs"])
        for split, values in metrics["final"].items():
            plot_confusion(stage, split, values["confusion_matrix"], metrics["classes"])
        write_model_card(stage, config, metrics["classes"], metrics["final"])
        owned.publish(stage)
    print(final_table(metrics["final"], metrics["classes"]))
    log.info("classifier, metrics.json and plots written to %s", owned.root)
    if config.push_to_hub:
        log.info("pushed to %s", push_classifier(owned.root, config.push_to_hub, config.hub_private))
