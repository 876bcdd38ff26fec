"""The up-front model check (``synthcore.availability``) on hand-made directories, caches and checkpoint files:
no model is loaded and nothing is downloaded (offline; the Hub probe is tested against a local server in
``test_models_available.py`` and ``test_token_scrub.py``)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants
from safetensors.torch import save_file
from torchvision.models import resnet18

from eval.scorers.resnet50 import ResNet50Scorer, ResNetSettings
from synthcore.availability import (
    CheckpointFile,
    DecoderMemory,
    ModelUnavailable,
    TorchvisionWeights,
    diffusers_pipeline,
    require_models,
    transformers_model,
)
from training.backbone import backbone_needs

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def offline_with_empty_caches(monkeypatch, tmp_path: Path):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))


def write_pipeline(root: Path, components: dict[str, list], present: list[str]) -> Path:
    root.mkdir(parents=True)
    (root / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline", **components}))
    for name in present:
        (root / name).mkdir()
        (root / name / "config.json").write_text("{}")
    return root


SD_COMPONENTS = {
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
    "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
    "feature_extractor": ["transformers", "CLIPImageProcessor"],
}


def pipeline(ref: str, safety_checker: bool = True):
    return diffusers_pipeline("model.id", ref, None, safety_checker, "model.safety_checker")


def test_a_directory_that_is_not_a_pipeline_is_refused_with_its_key():
    problem = pipeline("/etc").problem()
    assert problem.startswith("model.id: the diffusers pipeline '/etc' has no model_index.json")


def test_a_pipeline_directory_must_hold_every_component_it_lists(tmp_path: Path):
    whole = write_pipeline(tmp_path / "whole", SD_COMPONENTS, list(SD_COMPONENTS))
    assert pipeline(str(whole)).problem() is None
    holed = write_pipeline(tmp_path / "holed", SD_COMPONENTS, ["vae", "safety_checker", "feature_extractor"])
    assert "is incomplete: no unet" in pipeline(str(holed)).problem()


def test_the_safety_checker_is_needed_only_when_the_recipe_runs_it(tmp_path: Path):
    without = write_pipeline(
        tmp_path / "sd21", {**SD_COMPONENTS, "safety_checker": [None, None]}, ["unet", "vae", "feature_extractor"]
    )
    problem = pipeline(str(without)).problem()
    assert "has no safety checker, which model.safety_checker asks for" in problem
    assert "set model.safety_checker: false" in problem
    assert pipeline(str(without), safety_checker=False).problem() is None
    unshipped = write_pipeline(tmp_path / "nochecker", SD_COMPONENTS, ["unet", "vae", "feature_extractor"])
    assert "no safety_checker" in pipeline(str(unshipped)).problem()
    assert pipeline(str(unshipped), safety_checker=False).problem() is None


def test_a_clip_directory_needs_config_and_weights(tmp_path: Path):
    clip = tmp_path / "clip"
    clip.mkdir()
    (clip / "config.json").write_text("{}")
    need = transformers_model("scoring.clip.model", str(clip), "CLIP model")
    problem = need.problem()
    assert problem.startswith(f"scoring.clip.model: the CLIP model '{clip}' has no model.safetensors or")
    for name in ("model.safetensors", "preprocessor_config.json", "tokenizer.json"):
        (clip / name).write_text("{}")
    assert need.problem() is None


def cache_snapshot(cache: Path, repo: str, files: list[str]) -> Path:
    """The Hugging Face cache layout huggingface_hub writes: refs/main -> snapshots/<commit>/<files>."""
    repo_dir = cache / f"models--{repo.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(COMMIT)
    snapshot = repo_dir / "snapshots" / COMMIT
    for name in files:
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).write_text("{}")
    return snapshot


def test_a_hub_model_offline_is_available_only_when_complete_in_the_cache(tmp_path: Path):
    need = transformers_model("scoring.clip.model", "someone/clip", "CLIP model")
    missing = need.problem()
    assert "'someone/clip' is not in the local Hugging Face cache, and HF_HUB_OFFLINE=1 forbids" in missing
    assert "`hf download someone/clip`" in missing and "'tiny-random'" in missing and "unset HF_HUB_OFFLINE" in missing
    snapshot = cache_snapshot(tmp_path / "hf-cache", "someone/clip", ["config.json", "preprocessor_config.json"])
    assert "in the local Hugging Face cache has no model.safetensors" in need.problem()
    for name in ("model.safetensors", "vocab.json"):
        (snapshot / name).write_text("{}")
    assert need.problem() is None


def test_a_cached_pipeline_names_its_revision_in_the_download_command(tmp_path: Path):
    need = diffusers_pipeline("model.id", "someone/sd", "v2", True, "model.safety_checker")
    assert "`hf download someone/sd --revision v2 --include model_index.json" in need.problem()
    cache_snapshot(tmp_path / "hf-cache", "someone/sd", ["model_index.json"])
    assert (
        "is not in the local Hugging Face cache"
        in diffusers_pipeline("model.id", "someone/sd", "v2", True, "model.safety_checker").problem()
    )  # the revision v2 is not cached, main is


def test_torchvision_weights_are_found_in_torch_hubs_cache(tmp_path: Path):
    [need] = ResNet50Scorer().model_refs(ResNetSettings(weights="IMAGENET1K_V2"))
    assert isinstance(need, TorchvisionWeights)
    problem = need.problem()
    cached = tmp_path / "torch-home" / "hub" / "checkpoints" / "resnet50-11ad3fa6.pth"
    assert problem.startswith("scoring.resnet50.weights: the torchvision ResNet50 weights file 'IMAGENET1K_V2'")
    assert str(cached) in problem and "https://download.pytorch.org/models/resnet50-11ad3fa6.pth" in problem
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"weights")
    assert need.problem() is None
    assert ResNet50Scorer().model_refs(ResNetSettings(weights="tiny-random")) == []


def test_checkpoints_must_be_state_dicts_of_the_architecture(tmp_path: Path):
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\n")
    [need] = ResNet50Scorer().model_refs(ResNetSettings(weights=str(passwd)))
    assert "neither a PyTorch checkpoint (zip or pickle) nor a safetensors file" in need.problem()

    a_list = tmp_path / "list.pt"
    torch.save([1, 2, 3], a_list)
    assert "it holds a list, not a state dict" in need_for(a_list).problem()

    state = resnet18(weights=None).state_dict()
    torch.save({"state_dict": state}, tmp_path / "wrapped.pt")
    assert need_for(tmp_path / "wrapped.pt").problem() is None
    save_file({k: v.contiguous() for k, v in state.items() if not k.startswith("fc.")}, tmp_path / "body.safetensors")
    assert need_for(tmp_path / "body.safetensors").problem() is None

    as_resnet50 = ResNet50Scorer().model_refs(ResNetSettings(weights=str(tmp_path / "wrapped.pt")))[0].problem()
    assert "is not a state dict of torchvision's resnet50" in as_resnet50 and "missing" in as_resnet50


class _Exploit:
    def __reduce__(self):
        return (Path.touch, (Path("/tmp/synthdata-availability-exploit"),))


def test_a_pickle_that_would_run_code_is_refused_without_running_it(tmp_path: Path):
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"conv1.weight": _Exploit()}, protocol=2))
    Path("/tmp/synthdata-availability-exploit").unlink(missing_ok=True)
    assert "torch.load(weights_only=True) cannot read it" in need_for(evil).problem()
    assert not Path("/tmp/synthdata-availability-exploit").exists()


def need_for(path: Path) -> CheckpointFile:
    [need] = backbone_needs(str(path))
    return need


def test_every_problem_is_reported_at_once():
    with pytest.raises(ModelUnavailable) as raised:
        require_models([pipeline("/etc"), *backbone_needs("IMAGENET1K_V1"), *backbone_needs("none")])
    message = str(raised.value)
    assert message.startswith("2 models this run needs are not available or cannot run; nothing was loaded or written:")
    assert "\n- model.id: " in message and "\n- --backbone-weights: the torchvision ResNet18 weights file" in message
    require_models([pipeline("tiny-random"), *backbone_needs("none")])


def decoder(ref: str, side: int) -> DecoderMemory:
    return DecoderMemory("generation.height, generation.width", ref, "pipeline", None, side, side, "float32", "cpu")


def test_an_image_size_the_vae_decoder_cannot_hold_is_refused_with_the_number(tmp_path: Path):
    for name, channels in (("sd", 128), ("wide", 65536)):
        (tmp_path / name / "vae").mkdir(parents=True)
        (tmp_path / name / "vae" / "config.json").write_text(json.dumps({"block_out_channels": [channels, 256]}))
    assert decoder(str(tmp_path / "sd"), 512).problem() is None  # 128 x 512 x 512 x 4 bytes x 2: 256 MiB
    problem = decoder(str(tmp_path / "wide"), 1024).problem()  # 65536 channels: 512 GiB at 1024x1024
    assert problem.startswith("generation.height, generation.width: 1024x1024 images cannot be made on this")
    assert "needs at least 512.0 GiB (65536 channels of 1024x1024 float32 values" in problem
    assert decoder("someone/uncached", 100_000).problem() is None  # no VAE config on disk: nothing to say
