"""A newcomer's first commands: every model is checked before any work, a missing one is one message and exit
code 4 with nothing written, the Hub probe gives up at once; the console keeps log lines off the progress bar;
``--dry-run`` stays light and says whose architecture it estimates; model files get ordinary permissions."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT, run_build, write_recipe

pytestmark = pytest.mark.e2e  # command lines in subprocesses

MODEL_UNAVAILABLE = 4


@pytest.fixture()
def empty_caches(tmp_path: Path) -> dict[str, str]:
    """Offline, with a Hugging Face cache and a torch.hub cache that hold nothing."""
    return {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf-home"), "TORCH_HOME": str(tmp_path / "torch-home")}


def run_module(module: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_one_clear_message(result: subprocess.CompletedProcess, *expected: str) -> None:
    assert result.returncode == MODEL_UNAVAILABLE, result.stderr
    assert "Traceback" not in result.stderr and "nothing was loaded or written" in result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr


def test_the_reference_recipe_offline_names_every_missing_model(empty_caches: dict, tmp_path: Path):
    started = time.monotonic()
    result = run_build("recipes/fox_dog.yaml", "--output-dir", str(tmp_path / "out"), env=empty_caches, check=False)
    assert_one_clear_message(
        result,
        "3 models this run needs are not available",
        "- model.id: the diffusers pipeline 'stable-diffusion-v1-5/stable-diffusion-v1-5' is not in the local",
        # only the files the build reads (issue 29): the pipeline folders, not the single-file checkpoints
        "`hf download stable-diffusion-v1-5/stable-diffusion-v1-5 --include model_index.json",
        "- scoring.clip.model: the CLIP model 'openai/clip-vit-base-patch32'",
        "- scoring.resnet50.weights: the torchvision ResNet50 weights file 'IMAGENET1K_V2'",
        "https://download.pytorch.org/models/resnet50-11ad3fa6.pth",
        "unset HF_HUB_OFFLINE",
        "'tiny-random'",
    )
    assert "generating" not in result.stderr  # no progress bar was drawn
    assert not (tmp_path / "out").exists()
    assert time.monotonic() - started < 120


def test_paths_that_are_not_what_they_claim_are_refused_before_loading(empty_caches: dict, tmp_path: Path):
    smoke = (ROOT / "recipes" / "smoke.yaml").read_text(encoding="utf-8")
    bad = smoke.replace("id: tiny-random", "id: /etc").replace(
        "resnet50: {weights: tiny-random}", "resnet50: {weights: /etc/passwd}"
    )
    recipe = write_recipe(tmp_path, bad)
    result = run_build(str(recipe), "--output-dir", str(tmp_path / "out"), env=empty_caches, check=False)
    assert_one_clear_message(
        result,
        "- model.id: the diffusers pipeline '/etc' has no model_index.json",
        "- scoring.resnet50.weights: the checkpoint '/etc/passwd' is not a state dict of torchvision's resnet50",
    )
    assert not (tmp_path / "out").exists()


def test_eval_with_default_models_offline(smoke_dir: Path, empty_caches: dict, tmp_path: Path):
    result = run_module("eval", str(smoke_dir), "--output-dir", str(tmp_path / "scored"), env=empty_caches)
    assert_one_clear_message(
        result,
        "- --clip-model: the CLIP model 'openai/clip-vit-base-patch32'",
        "`hf download openai/clip-vit-base-patch32`",
        "- --resnet50-weights: the torchvision ResNet50 weights file 'IMAGENET1K_V2'",
    )
    assert not (tmp_path / "scored").exists()


def test_training_with_the_default_backbone_offline(smoke_dir: Path, empty_caches: dict, tmp_path: Path):
    out = tmp_path / "probe"
    result = run_module("training", "--dataset", str(smoke_dir), "--output-dir", str(out), env=empty_caches)
    assert_one_clear_message(
        result,
        "- --backbone-weights: the torchvision ResNet18 weights file 'IMAGENET1K_V1'",
        str(Path(empty_caches["TORCH_HOME"]) / "hub" / "checkpoints" / "resnet18-f37072fd.pth"),
        "or to 'none'",
    )
    assert not out.exists()


def test_an_unreachable_hub_is_one_attempt_and_one_message(smoke_dir: Path, tmp_path: Path):
    env = {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf-home")}
    started = time.monotonic()
    result = run_module(
        "eval",
        str(smoke_dir),
        "--output-dir",
        str(tmp_path / "s"),
        "--clip-model",
        "someone/clip",
        "--no-resnet50",
        env=env,
    )
    assert_one_clear_message(result, "'someone/clip' is not in the local cache, and the Hub is unreachable")
    assert "Retry" not in result.stderr and result.stderr.count("someone/clip' is not") == 1
    assert time.monotonic() - started < 60


def test_log_lines_are_not_glued_to_the_progress_bar(smoke_log: str):
    assert re.search(r"img/s\]\d{4}-\d\d-\d\d ", smoke_log) is None
    for line in smoke_log.splitlines():
        shown = line.rsplit("\r", 1)[-1]  # what a terminal shows of the line
        if " INFO " in line or " WARNING " in line:
            assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING) ", shown), repr(line)
    assert re.search(r"time per stage: load models [\d.]+s, generate [\d.]+s", smoke_log)


def test_dry_run_imports_no_generation_stack_and_names_the_architecture(tmp_path: Path):
    code = (
        "import sys\nfrom builders.cli import main\nrc = main(sys.argv[1:])\n"
        "print('loaded:', sorted(m for m in ('diffusers', 'transformers') if m in sys.modules))\nsys.exit(rc)\n"
    )
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", code, "recipes/smoke.yaml", "--dry-run", "--output-dir", str(tmp_path / "none")],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "loaded: []" in result.stdout
    assert "model.id 'tiny-random' is a tiny random test pipeline" in result.stdout
    assert time.monotonic() - started < 60


def test_the_console_script_is_the_build_command():
    from importlib.metadata import entry_points

    from builders.cli import main

    [script] = entry_points(group="console_scripts", name="synthdata-build")
    assert script.load() is main


def test_classifier_files_have_the_permissions_of_every_other_output(smoke_dir: Path, tmp_path: Path):
    out = tmp_path / "probe"
    args = ["--dataset", str(smoke_dir), "--output-dir", str(out), "--backbone-weights", "none", "--epochs", "1"]
    result = run_module("training", *args, "--cache-dir", str(tmp_path / "features"), env={})
    assert result.returncode == 0, result.stderr
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir() if p.is_file()}
    assert modes["model.safetensors"] == modes["head.safetensors"] == modes["metrics.json"], modes


def test_library_warnings_print_once_and_every_message_is_scrubbed():
    token = "hf_ScRuBmE0123456789abcdefghij"
    code = (
        "import logging, warnings\nimport datasets\nfrom synthcore.logs import configure_logging\n"
        "configure_logging()\n"
        "logging.getLogger('huggingface_hub.utils._http').warning('Retrying in 1s [Retry 1/5] for %s', 'url')\n"
        "logging.getLogger('datasets.load').warning('datasets says hello')\n"
        f"warnings.warn('a warning quoting {token}')\n"
        f"raise RuntimeError('the server said: Bearer {token}')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "HF_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.count("Retrying in 1s [Retry 1/5] for url") == 1
    assert result.stderr.count("datasets says hello") == 1
    assert token not in result.stderr and "a warning quoting <token>" in result.stderr
    assert "RuntimeError: the server said: Bearer <token>" in result.stderr
