"""The linear probe end to end on real datasets on disk: a colour dataset it must learn, and the smoke build.

Runs use ``--backbone-weights none`` (a seeded random ResNet18: no download), whose pooled features still
separate solid red, green and blue images. The feature cache of each test is its own directory, so the
backbone's work (counted by a forward hook, reported as ``backbone_images``) is observable run by run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from tests.helpers import ROOT
from training import ImageClassifier, load_classifier
from training.__main__ import main
from training.backbone import backbone_identity, build_resnet18, eval_transform
from training.config import TrainingError, parse_config
from training.train import run

pytestmark = pytest.mark.e2e  # builds, model loads or subprocesses: the end-to-end tier

COLOURS = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}


def colour_split(
    per_class: int, seed: int, names: list[str] | None = None, with_scores: bool = True
) -> datasets.Dataset:
    """Noisy 32x32 solid-colour images; ``clip_true_prob`` is a made-up score column to filter on."""
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {"image": [], "label": [], "clip_true_prob": []}
    for label, rgb in enumerate(COLOURS.values()):
        for _ in range(per_class):
            pixels = np.clip(np.array(rgb) + rng.normal(0, 40, (32, 32, 3)), 0, 255).astype(np.uint8)
            rows["image"].append(Image.fromarray(pixels))
            rows["label"].append(label)
            rows["clip_true_prob"].append(float(rng.uniform()))
    features = {
        "image": datasets.Image(),
        "label": datasets.ClassLabel(names=names or list(COLOURS)),
        "clip_true_prob": datasets.Value("float32"),
    }
    if not with_scores:
        del rows["clip_true_prob"], features["clip_true_prob"]
    return datasets.Dataset.from_dict(rows, features=datasets.Features(features))


def write_hub_layout(root: Path, splits: dict[str, datasets.Dataset]) -> Path:
    """The layout our builds write and load_dataset reads: data/<split>-00000-of-00001.parquet."""
    for name, split in splits.items():
        split.to_parquet(str(root / "data" / f"{name}-00000-of-00001.parquet"))
    return root


@pytest.fixture(scope="module")
def colours(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("colours") / "colours"
    return write_hub_layout(root, {"train": colour_split(20, seed=0), "test": colour_split(10, seed=1)})


@pytest.fixture(scope="module")
def trained(colours, tmp_path_factory) -> tuple[Path, dict, Path]:
    """One probe run on the colour dataset: (output dir, its metrics, its feature cache dir)."""
    out, cache = tmp_path_factory.mktemp("probe"), tmp_path_factory.mktemp("features")
    metrics = run(
        parse_config(
            [
                "--dataset",
                str(colours),
                "--output-dir",
                str(out),
                "--backbone-weights",
                "none",
                "--cache-dir",
                str(cache),
            ]
        )
    )
    return out, metrics, cache


def probe(dataset: Path, out: Path, cache: Path, *extra: str) -> dict:
    return run(
        parse_config(
            [
                "--dataset",
                str(dataset),
                "--output-dir",
                str(out),
                "--backbone-weights",
                "none",
                "--cache-dir",
                str(cache),
                *extra,
            ]
        )
    )


def test_probe_learns_colours_and_writes_metrics(trained):
    out, metrics, _ = trained
    assert metrics["final"]["test"]["accuracy"] >= 0.9
    assert metrics["feature_cache"] == {"train": "miss", "test": "miss"}
    assert metrics["backbone_images"] == 90 and metrics["train_rows"] == 60
    written = json.loads((out / "metrics.json").read_text())
    assert written["classes"] == ["red", "green", "blue"] and len(written["epochs"]) == 10
    for epoch in written["epochs"]:
        assert {"loss", "accuracy"} <= set(epoch["train"])
        test = epoch["eval"]["test"]
        assert {"loss", "accuracy", "macro_f1", "precision", "recall", "support", "confusion_matrix"} <= set(test)
        assert set(test["precision"]) == set(test["recall"]) == set(COLOURS)
        assert np.array(test["confusion_matrix"]).sum() == 30 and len(test["confusion_matrix"]) == 3
    assert written["final"] == written["epochs"][-1]["eval"]
    for png in ("curves.png", "confusion_test.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = (out / "README.md").read_text()
    assert "linear-probe" in card and "| test |" in card


def test_second_run_reads_cached_features_without_the_backbone(colours, trained, tmp_path):
    _, first, cache = trained
    again = probe(colours, tmp_path, cache)
    assert again["feature_cache"] == {"train": "hit", "test": "hit"}
    assert again["backbone_images"] == 0
    assert again["final"] == first["final"]


def test_changed_dataset_invalidates_the_cache(tmp_path):
    """datasets fingerprints a loaded split from all of the dataset's data files: any rewrite is a new dataset."""
    small = write_hub_layout(tmp_path / "small", {"train": colour_split(2, seed=0), "test": colour_split(1, seed=1)})
    assert probe(small, tmp_path / "a", tmp_path / "cache", "--epochs", "1")["feature_cache"] == {
        "train": "miss",
        "test": "miss",
    }
    write_hub_layout(small, {"train": colour_split(2, seed=2)})  # new training images
    metrics = probe(small, tmp_path / "b", tmp_path / "cache", "--epochs", "1")
    assert metrics["feature_cache"] == {"train": "miss", "test": "miss"}
    assert metrics["backbone_images"] == 9


def test_saved_classifier_reloads_and_predicts_the_same_labels(colours, trained):
    out, metrics, _ = trained
    model = load_classifier(out)
    assert isinstance(model, ImageClassifier) and model.classes == ["red", "green", "blue"]
    test = datasets.load_dataset(str(colours), split="test")
    predicted = model.predict(test["image"][:])
    truth = [model.classes[i] for i in test["label"][:]]
    matrix = [[sum(p == b and t == a for p, t in zip(predicted, truth)) for b in model.classes] for a in model.classes]
    assert matrix == metrics["final"]["test"]["confusion_matrix"]
    assert set(os.listdir(out)) >= {
        "config.json",
        "head.safetensors",
        "model.safetensors",
    }  # random backbone travels with it
    tensors = [torch.from_numpy(np.array(im)).permute(2, 0, 1) for im in test["image"][:4]]
    assert model.predict(tensors) == predicted[:4]
    assert model(model.preprocess(test["image"][:2])).shape == (2, 3)


def test_min_true_class_prob_filters_training_rows(colours, trained, tmp_path):
    _, _, cache = trained
    metrics = probe(colours, tmp_path, cache, "--min-true-class-prob", "0.8", "--epochs", "1")
    expected = sum(p >= 0.8 for p in datasets.load_dataset(str(colours), split="train")["clip_true_prob"])
    assert metrics["train_rows"] == expected < 60
    assert metrics["config"]["min_scores"] == {"clip_true_prob": 0.8}
    assert metrics["feature_cache"]["train"] == "miss"  # a filtered split is a different dataset


def test_score_filter_on_a_missing_column_is_a_clear_error(tmp_path):
    plain = write_hub_layout(tmp_path / "plain", {"train": colour_split(2, seed=0, with_scores=False)})
    with pytest.raises(TrainingError, match="cannot filter on 'clip_true_prob': no such column"):
        probe(plain, tmp_path / "out", tmp_path / "cache", "--min-true-class-prob", "0.5")


def test_eval_dataset_with_label_map(colours, trained, tmp_path):
    _, _, cache = trained
    real = write_hub_layout(tmp_path / "real", {"test": colour_split(5, seed=3, names=["crimson", "green", "blue"])})
    with pytest.raises(TrainingError, match=r"\['crimson'\] have no counterpart"):
        probe(colours, tmp_path / "a", cache, "--eval-dataset", str(real))
    metrics = probe(colours, tmp_path / "b", cache, "--eval-dataset", str(real), "--label-map", "crimson=red")
    assert list(metrics["final"]) == ["test", "real/test"]
    assert metrics["final"]["real/test"]["accuracy"] >= 0.9
    assert metrics["final"]["real/test"]["support"] == {"red": 5, "green": 5, "blue": 5}
    assert (tmp_path / "b" / "confusion_real_test.png").is_file()


def test_bad_inputs_are_named(colours, tmp_path):
    with pytest.raises(TrainingError, match=r"no split 'val' \(it has: train, test\)"):
        probe(colours, tmp_path, tmp_path, "--eval-splits", "val")
    with pytest.raises(TrainingError, match="--label-map: expected NAME=VALUE"):
        parse_config(["--dataset", "x", "--output-dir", "y", "--label-map", "crimson"])
    with pytest.raises(TrainingError, match="neither a torchvision ResNet18_Weights name"):
        build_resnet18(str(tmp_path / "missing.pt"))


def test_local_checkpoint_backbone_is_the_same_network(tmp_path):
    """A checkpoint of the seeded random ResNet18 loads to identical weights, hence the same cache identity."""
    seeded = build_resnet18("none", seed=0)
    save_file(seeded.state_dict(), tmp_path / "resnet18.safetensors")
    torch.save(seeded.state_dict(), tmp_path / "resnet18.pt")
    transform = eval_transform("none")
    for path in ("resnet18.safetensors", "resnet18.pt"):
        loaded = build_resnet18(str(tmp_path / path))
        assert backbone_identity(loaded, transform) == backbone_identity(seeded, transform)
    assert backbone_identity(build_resnet18("none", seed=1), transform) != backbone_identity(seeded, transform)
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(TrainingError, match="is not a ResNet18 state dict"):
        build_resnet18(str(tmp_path / "other.pt"))


def test_finetune_mode_trains_the_whole_model(tmp_path):
    tiny = write_hub_layout(tmp_path / "tiny", {"train": colour_split(2, seed=0), "test": colour_split(1, seed=1)})
    out = tmp_path / "finetune"
    metrics = run(
        parse_config(
            [
                "--dataset",
                str(tiny),
                "--output-dir",
                str(out),
                "--backbone-weights",
                "none",
                "--mode",
                "finetune",
                "--epochs",
                "1",
                "--batch-size",
                "6",
            ]
        )
    )
    assert (
        "feature_cache" not in metrics
        and len(metrics["epochs"]) == 1
        and metrics["final"]["test"]["support"]["red"] == 1
    )
    config = json.loads((out / "config.json").read_text())
    assert config["mode"] == "finetune" and config["weights_file"] == "model.safetensors"
    trained_conv = load_file(out / "model.safetensors")["conv1.weight"]
    assert not torch.equal(trained_conv, build_resnet18("none").state_dict()["conv1.weight"])
    assert len(load_classifier(out).predict(Image.new("RGB", (32, 32), "red"))) == 1


def test_push_offline_fails_at_the_hub_client(colours, trained, tmp_path, monkeypatch, capsys):
    _, _, cache = trained
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    code = main(
        [
            "--dataset",
            str(colours),
            "--output-dir",
            str(tmp_path),
            "--backbone-weights",
            "none",
            "--cache-dir",
            str(cache),
            "--epochs",
            "1",
            "--push-to-hub",
            "someone/colour-probe",
        ]
    )
    assert code == 3
    assert "cannot push to the Hub model someone/colour-probe: OfflineModeIsEnabled" in capsys.readouterr().err
    assert (tmp_path / "metrics.json").is_file() and load_classifier(tmp_path).classes == list(COLOURS)


def test_cli_trains_on_the_smoke_build_and_a_failed_push_keeps_outputs(smoke_dir, tmp_path):
    """The tool's real output schema through ``python -m training`` in a fresh process; with no Hub token the
    push fails with a clear message and exit code 3, after every local output is written."""
    out = tmp_path / "probe"
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    env.update(HF_TOKEN_PATH=str(tmp_path / "no-token"), PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "training",
            "--dataset",
            str(smoke_dir),
            "--output-dir",
            str(out),
            "--backbone-weights",
            "none",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--epochs",
            "2",
            "--push-to-hub",
            "someone/smoke-probe",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 3, result.stderr
    assert "cannot push to the Hub model someone/smoke-probe: no Hugging Face token" in result.stderr
    assert "== test ==" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["classes"] == ["fox", "dog", "여우"] and metrics["train_rows"] == 12
    assert list(metrics["final"]) == ["test"] and sum(metrics["final"]["test"]["support"].values()) == 6
    assert {"config.json", "head.safetensors", "model.safetensors", "README.md", "curves.png"} <= set(os.listdir(out))
    assert load_classifier(out).classes == ["fox", "dog", "여우"]


def test_accelerate_launch_splits_extraction_and_matches_one_process(colours, trained, tmp_path):
    """Two CPU processes each extract half of every split; the joined cache entries equal the one-process ones."""
    _, _, single = trained
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--num_processes",
            "2",
            "--cpu",
            "-m",
            "training",
            "--dataset",
            str(colours),
            "--output-dir",
            str(tmp_path / "out"),
            "--backbone-weights",
            "none",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--epochs",
            "10",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    entries = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(entries) == 2 and set(entries) <= {p.name for p in single.iterdir()}  # same keys: train and test
    for name in entries:
        two, one = load_file(tmp_path / "cache" / name), load_file(single / name)
        assert torch.equal(two["labels"], one["labels"]) and torch.allclose(two["features"], one["features"], atol=1e-5)
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["final"]["test"]["accuracy"] >= 0.9
