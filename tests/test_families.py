"""Model families: the family comes from the model's model_index.json, the recipe is checked against it and gets its
defaults before any weights load, and every family builds the same dataset on 1 and 2 processes.

The fast tests read hand-made model directories (only the small JSON files a family is decided from) and a hand-made
local Hub cache; the end-to-end ones build datasets with tiny random pipelines of every family (synthcore/tiny.py).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from builders.card import card_data, license_metadata
from builders.generators import FAMILIES, GENERATORS, describe, family_of, resolve_family
from builders.generators.base import opaque_rgb, to_uint8_hwc
from builders.generators.generic import SignatureGenerator
from builders.generators.modular import ModularGenerator
from builders.generators.tiny import TINY_FAMILIES, tiny_family_dir
from builders.plan import content_fingerprint
from builders.recipe import RecipeError, load_recipe, parse_recipe, recipe_to_yaml
from synthcore.tiny import tiny_safety_checker_dir
from tests.helpers import (
    ACCELERATE,
    FAMILY_RECIPE,
    ROOT,
    SAME_THREADS,
    benchmark_headline,
    build_here,
    run_build,
    run_main,
    table,
    write_recipe,
)

RECIPE = """
name: t
model: {{id: {model}{model_extra}}}
{generation}
classes:
  fox: {{prompts: [a fox]{class_extra}}}
splits: {{train: 2}}
{extra}
"""


def recipe_for(model: Path | str, generation: str = "", model_extra: str = "", class_extra: str = "", extra: str = ""):
    text = RECIPE.format(
        model=model, model_extra=model_extra, generation=generation, class_extra=class_extra, extra=extra
    )
    return parse_recipe(text, "r.yaml")


def model_dir(root: Path, pipeline: str, **configs: dict) -> Path:
    """A model directory holding only what a family is decided from: model_index.json and component configs."""
    directory = root / pipeline
    directory.mkdir(parents=True)
    (directory / "model_index.json").write_text(json.dumps({"_class_name": pipeline, "_diffusers_version": "0.42.1"}))
    for component, config in configs.items():
        (directory / component).mkdir()
        (directory / component / "config.json").write_text(json.dumps(config))
    return directory


def resolve_problems(recipe) -> list[str]:
    with pytest.raises(RecipeError) as caught:
        resolve_family(recipe, "r.yaml")
    assert str(caught.value).startswith("r.yaml: invalid recipe")
    return caught.value.problems


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_the_family_comes_from_model_index(family, tmp_path: Path):
    directory = model_dir(tmp_path, family.pipeline_classes[0])
    resolved = resolve_family(recipe_for(directory))
    assert resolved.model.pipeline == family.pipeline_classes[0]
    assert family_of(resolved) is family


def test_an_unknown_family_is_refused_with_the_known_ones(tmp_path: Path):
    (found,) = resolve_problems(recipe_for(model_dir(tmp_path, "KandinskyV22Pipeline")))
    assert found.startswith("model.id:") and "KandinskyV22Pipeline" in found
    assert all(name in found for name in GENERATORS)


def test_a_directory_without_model_index_is_not_a_pipeline(tmp_path: Path):
    (found,) = resolve_problems(recipe_for(tmp_path))
    assert found.startswith("model.id:") and "model_index.json" in found


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch) -> Path:
    """An empty local Hub cache, with the Hub unreachable (HF_HUB_OFFLINE)."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def cache_hub_model(cache: Path, repo: str, files: dict[str, dict]) -> None:
    """Put files of a Hub model into a local Hub cache, laid out as huggingface_hub lays out a download."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    for name, content in files.items():
        path = root / "snapshots" / commit / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content))


def test_a_hub_model_offline_and_not_cached_is_a_clear_error(hub_cache: Path):
    (found,) = resolve_problems(recipe_for("someone/not-cached-model"))
    assert found.startswith("model.id: cannot fetch model_index.json of 'someone/not-cached-model'")
    assert "not in the local Hub cache" in found


def test_a_hub_model_is_decided_from_its_cached_json_files_alone(hub_cache: Path):
    cache_hub_model(
        hub_cache,
        "someone/flux-schnell-like",
        {"model_index.json": {"_class_name": "FluxPipeline"}, "transformer/config.json": {"guidance_embeds": False}},
    )
    resolved = resolve_family(recipe_for("someone/flux-schnell-like"))
    gen = resolved.generation
    assert (gen.height, gen.width, gen.num_inference_steps, gen.guidance_scale) == (1024, 1024, 4, 0.0)
    assert resolved.model.pipeline == "FluxPipeline" and resolved.model.max_sequence_length == 256


@pytest.mark.parametrize(
    "pipeline, configs, expected",
    [
        ("StableDiffusionPipeline", {"unet": {"sample_size": 64}}, (512, 50, 7.5, None)),
        ("StableDiffusionPipeline", {"unet": {"sample_size": 96}}, (768, 50, 7.5, None)),  # SD 2.x 768-v
        ("StableDiffusionXLPipeline", {"unet": {"sample_size": 128}}, (1024, 50, 5.0, None)),
        ("StableDiffusionXLPipeline", {"unet": {"sample_size": 64}}, (512, 50, 5.0, None)),  # SDXL-Turbo
        ("StableDiffusion3Pipeline", {"transformer": {"sample_size": 128}}, (1024, 28, 7.0, 256)),
        ("FluxPipeline", {"transformer": {"guidance_embeds": True}}, (1024, 50, 3.5, 512)),
        ("FluxPipeline", {"transformer": {"guidance_embeds": False}}, (1024, 4, 0.0, 256)),
        ("PixArtSigmaPipeline", {"transformer": {"sample_size": 128}}, (1024, 20, 4.5, 300)),
        ("SanaPipeline", {"transformer": {"sample_size": 32}}, (1024, 20, 4.5, 300)),  # DC-AE: 32 pixels a latent
        ("ZImagePipeline", {}, (1024, 50, 4.0, 512)),  # the base model; Turbo's id names it (below)
    ],
)
def test_keys_left_out_take_the_family_defaults(pipeline, configs, expected, tmp_path: Path):
    resolved = resolve_family(recipe_for(model_dir(tmp_path, pipeline, **configs)))
    gen = resolved.generation
    size, steps, guidance, sequence = expected
    assert (gen.height, gen.width, gen.num_inference_steps, gen.guidance_scale) == (size, size, steps, guidance)
    assert resolved.model.max_sequence_length == sequence


def test_keys_the_recipe_sets_are_kept_and_recipe_yaml_records_the_resolved_values(tmp_path: Path):
    directory = model_dir(tmp_path, "StableDiffusionXLPipeline", unet={"sample_size": 128})
    recipe = recipe_for(directory, "generation: {num_inference_steps: 4, guidance_scale: 0, height: 512}")
    resolved = resolve_family(recipe)
    gen = resolved.generation
    assert (gen.height, gen.width, gen.num_inference_steps, gen.guidance_scale) == (512, 1024, 4, 0.0)
    stored = parse_recipe(recipe_to_yaml(resolved), "recipe.yaml")
    assert stored.model.pipeline == "StableDiffusionXLPipeline" and stored.generation.width == 1024
    assert resolve_family(stored) == resolved


def test_tiny_random_is_stable_diffusion_and_keeps_its_defaults(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("SYNTHDATA_CACHE", str(tmp_path / "cache"))
    recipe = recipe_for("tiny-random")
    resolved = resolve_family(recipe)
    assert resolved.model.pipeline == "StableDiffusionPipeline"
    assert resolved.generation == recipe.generation and resolved.model.max_sequence_length is None
    assert not (tmp_path / "cache").exists(), "deciding the family builds nothing"


def test_settings_the_family_does_not_support_are_recipe_errors_naming_the_key(tmp_path: Path):
    flux = model_dir(tmp_path, "FluxPipeline", transformer={"guidance_embeds": False})
    recipe = recipe_for(
        flux,
        "generation: {height: 520, guidance_scale: 3.5}",
        model_extra=", scheduler: dpm++, max_sequence_length: 1000",
        class_extra=", negative_prompt: blurry, guidance_scale: 2",
        extra="negative_prompt: lowres",
    )
    found = resolve_problems(recipe)
    expected = [
        "generation.height: FLUX.1 needs a multiple of 16",
        "negative_prompt: FLUX.1 takes no negative prompt",
        "classes.fox.negative_prompt: FLUX.1 takes no negative prompt",
        "model.scheduler: 'dpm++' is a noise-prediction scheduler",
        "model.max_sequence_length: FLUX.1 takes at most 512 tokens, got 1000",
        "generation.guidance_scale: none: FLUX.1 [schnell] is timestep-distilled",
        "classes.fox.guidance_scale: none: FLUX.1 [schnell]",
    ]
    assert len(found) == len(expected)
    for start in expected:
        assert any(problem.startswith(start) for problem in found), (start, found)


def test_a_t5_length_for_a_family_without_t5_and_a_wrong_recorded_pipeline_are_recipe_errors(tmp_path: Path):
    sdxl = model_dir(tmp_path, "StableDiffusionXLPipeline")
    found = resolve_problems(recipe_for(sdxl, model_extra=", max_sequence_length: 77, pipeline: FluxPipeline"))
    assert found == [
        "model.pipeline: the model's model_index.json names StableDiffusionXLPipeline, not FluxPipeline",
        "model.max_sequence_length: Stable Diffusion XL has no T5-like text encoder to limit",
    ]


def test_flux_dev_guidance_is_its_embedding_and_runs_one_pass(tmp_path: Path):
    dev = model_dir(tmp_path, "FluxPipeline", transformer={"guidance_embeds": True})
    resolved = resolve_family(recipe_for(dev, "generation: {height: 512, width: 512}"))
    family = family_of(resolved)
    assert family.passes(3.5) == 1 and GENERATORS["StableDiffusionXLPipeline"].passes(5.0) == 2

    assert "distilled guidance embedding" in describe(resolved)["guidance"]
    assert describe(resolved)["safety_checker"].startswith("standalone Stable Diffusion safety checker")


def test_the_fingerprint_covers_the_family_and_the_loras(tmp_path: Path):
    sd = resolve_family(recipe_for(model_dir(tmp_path / "a", "StableDiffusionPipeline")))
    sdxl = sd.model_copy(update={"model": sd.model.model_copy(update={"pipeline": "StableDiffusionXLPipeline"})})
    lora = recipe_for(tmp_path / "a" / "StableDiffusionPipeline", model_extra=f", loras: [{{id: {tmp_path}}}]")
    prints = [content_fingerprint(r, "cpu", "float32") for r in (sd, sdxl, resolve_family(lora))]
    assert prints[0]["model.pipeline"] != prints[1]["model.pipeline"]
    assert prints[2]["model.loras"] == [{"id": str(tmp_path), "weight_name": None, "scale": 1.0}]
    assert prints[0] != prints[2]


def test_auto_dtype_on_a_gpu_is_the_family_s(tmp_path: Path):
    from builders.spec import placement_for

    expected = {
        "FluxPipeline": "bfloat16",
        "StableDiffusion3Pipeline": "bfloat16",
        "SanaPipeline": "bfloat16",
        "ZImagePipeline": "bfloat16",
        "Flux2KleinPipeline": "bfloat16",
        "Krea2Pipeline": "bfloat16",
        "QwenImage21Pipeline": "bfloat16",
        "Flux3ModularPipeline": "bfloat16",
        "Flux3DistilledModularPipeline": "bfloat16",
    }
    for pipeline in GENERATORS:
        recipe = resolve_family(recipe_for(model_dir(tmp_path, pipeline)))
        assert placement_for(recipe, torch.device("cuda")).dtype_name == expected.get(pipeline, "float16")
        assert placement_for(recipe, torch.device("cpu")).dtype_name == "float32"


def test_flops_per_family_are_the_counted_ones_and_scale_with_the_settings(tmp_path: Path):
    counted = json.loads((ROOT / "benchmarks" / "families_architecture.json").read_text(encoding="utf-8"))
    for family in FAMILIES:
        measured = counted[family.name]["measured_gflops"]
        flops = family.flops
        assert (flops.denoiser, flops.vae_decode, flops.text_encoders) == (
            measured["denoiser"],
            measured["vae_decode"],
            measured["text_encoders"],
        )
        assert flops.size == counted[family.name]["size"] and flops.reference == counted[family.name]["reference"]
    dev = resolve_family(recipe_for(model_dir(tmp_path, "FluxPipeline", transformer={"guidance_embeds": True})))
    few = dev.model_copy(update={"generation": dev.generation.model_copy(update={"num_inference_steps": 4})})
    flux = family_of(dev)
    assert flux.tflops_per_image(dev, 3.5) == pytest.approx((74384.7 * 50 + 10472.2 + 4858.0) / 1000)
    assert flux.tflops_per_image(few, 3.5) < flux.tflops_per_image(dev, 3.5) / 10


def test_live_bytes_count_what_is_alive_at_once_and_attention_is_fused():
    from benchmarks.families import peak_bytes

    def chain():
        a = torch.zeros(256)  # 1 KiB
        b = a * 2  # 2 KiB alive at once
        del a
        c = (b + 1).view(16, 16)  # b freed only after c exists: 2 KiB again; a view adds nothing
        return c

    assert peak_bytes(chain) == 2048

    def attention():
        q, k, v = (torch.zeros(1, 1, 4096, 8) for _ in range(3))  # 128 KiB each
        return torch.nn.functional.scaled_dot_product_attention(q, k, v)

    assert peak_bytes(attention) == 4 * 128 * 1024, "no 4096 x 4096 score matrix (64 MiB) is counted"


def test_the_families_page_memory_column_is_the_estimates():
    counted = json.loads((ROOT / "benchmarks" / "families_architecture.json").read_text(encoding="utf-8"))
    page = (ROOT / "docs" / "families.md").read_text(encoding="utf-8")
    for name, family in counted.items():
        if name.startswith("_"):
            continue
        one, eight = (family["estimated_memory_gib"][batch]["total"] for batch in ("1", "8"))
        assert f"| {one} / {eight} GiB (estimate) |" in page, name


@pytest.mark.parametrize(
    "model_id, expected",
    [
        ("black-forest-labs/FLUX.1-schnell", {"license": "apache-2.0"}),
        ("stabilityai/stable-diffusion-xl-base-1.0", {"license": "openrail++"}),
        ("PixArt-alpha/PixArt-Sigma-XL-2-1024-MS", {"license": "openrail++"}),
        ("black-forest-labs/FLUX.1-dev", {"license": "other", "license_name": "flux-1-dev-non-commercial-license"}),
        ("stabilityai/stable-diffusion-3.5-medium", {"license": "other", "license_name": "stabilityai-ai-community"}),
        ("stabilityai/sdxl-turbo", {"license": "other", "license_name": "sai-nc-community"}),
        ("black-forest-labs/flux-3-image-klein", {"license": "other", "license_name": "flux-kommunity-license"}),
        ("Tongyi-MAI/Z-Image-Turbo", {"license": "apache-2.0"}),
        ("black-forest-labs/FLUX.2-klein-4B", {"license": "apache-2.0"}),
        ("black-forest-labs/FLUX.2-klein-9B", {"license": "other", "license_name": "flux-non-commercial-license"}),
        (
            "Qwen/Qwen-Image-2.1-Turbo",
            {
                "license": "other",
                "license_name": "qwen-research-license",
                "license_link": "https://huggingface.co/Qwen/Qwen-Image-2.1-Turbo/blob/main/LICENSE",
            },
        ),
        (
            "CalamitousFelicitousness/Krea-2-Turbo-Diffusers",
            {
                "license": "other",
                "license_name": "krea-2-community",
                "license_link": "https://www.krea.ai/krea-2-licensing",
            },
        ),
    ],
)
def test_the_card_licence_is_the_generator_s(model_id: str, expected: dict):
    found = license_metadata(model_id)
    assert expected.items() <= found.items()
    if found["license"] == "other" and "license_link" not in expected:
        assert found["license_link"] == f"https://huggingface.co/{model_id}/blob/main/LICENSE.md"


@pytest.mark.parametrize(
    "name, repo, files",
    [
        (
            "fox_dog_sdxl_turbo",
            "stabilityai/sdxl-turbo",
            {"model_index.json": {"_class_name": "StableDiffusionXLPipeline"}, "unet/config.json": {"sample_size": 64}},
        ),
        (
            "fox_dog_flux_schnell",
            "black-forest-labs/FLUX.1-schnell",
            {
                "model_index.json": {"_class_name": "FluxPipeline"},
                "transformer/config.json": {"guidance_embeds": False},
            },
        ),
    ],
)
def test_example_recipes_suit_their_family(name: str, repo: str, files: dict, hub_cache: Path):

    cache_hub_model(hub_cache, repo, files)
    resolved = resolve_family(load_recipe(ROOT / "recipes" / f"{name}.yaml"))
    assert resolved.model.id == repo and resolved.generation.num_inference_steps <= 4
    assert resolved.generation.guidance_scale == 0


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_text_encoder_dtype_is_refused_where_the_pipeline_casts_it_back(family, tmp_path: Path):
    recipe = recipe_for(model_dir(tmp_path, family.pipeline_classes[0]), model_extra=", text_encoder_dtype: bfloat16")
    if family.name in ("sd3", "flux", "sana"):
        fingerprint = content_fingerprint(resolve_family(recipe), "cpu", "float32")
        assert fingerprint["model.text_encoder_dtype"] == "bfloat16"
        return
    (found,) = resolve_problems(recipe)
    assert found.startswith(f"model.text_encoder_dtype: {family.label}'s pipeline casts prompt embeddings")


def test_text_encoder_dtype_is_in_the_fingerprint_only_when_set(tmp_path: Path):
    plain = resolve_family(recipe_for(model_dir(tmp_path, "SanaPipeline")))
    assert "model.text_encoder_dtype" not in content_fingerprint(plain, "cpu", "float32")


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_the_card_is_tagged_with_the_family(family, tmp_path: Path):
    resolved = resolve_family(recipe_for(model_dir(tmp_path, family.pipeline_classes[0])))
    features = datasets.Features({"label": datasets.ClassLabel(names=["fox"])})
    sizes = datasets.SplitDict()
    sizes.add(datasets.SplitInfo(name="train", num_examples=2))
    tags = card_data(resolved, features, sizes).tags
    assert tags == ["synthetic", *family.card_tags, "text-to-image"] and family.card_tags
    assert ("stable-diffusion" in tags) == family.name.startswith(("stable-diffusion", "sd"))


# -- LoRA adapters are checked with the other models, before anything loads --------------------------------------
def save_lora(path: Path, names: tuple[str, ...] = ("unet.mid.to_q.lora_A.weight", "unet.mid.to_q.lora_B.weight")):
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({name: torch.zeros(4, 4) for name in names}, str(path))
    return path


def lora_problems(loras: str) -> list[str]:
    from synthcore.availability import lora_needs

    recipe = recipe_for("tiny-random", model_extra=f", loras: {loras}")
    return [problem for need in lora_needs("model.loras", recipe.model.loras) if (problem := need.problem())]


def test_local_loras_are_found_as_diffusers_finds_them(tmp_path: Path):
    save_lora(tmp_path / "default" / "pytorch_lora_weights.safetensors")
    save_lora(tmp_path / "named" / "style.safetensors")
    file = save_lora(tmp_path / "file.safetensors")
    named = f"{{id: {tmp_path / 'named'}, weight_name: style.safetensors}}"
    assert lora_problems(f"[{{id: {tmp_path / 'default'}}}, {named}, {{id: {file}}}]") == []
    assert lora_problems(f"[{{id: {tmp_path / 'named'}}}]") == [], "a lone .safetensors file is diffusers' guess"


def test_a_lora_that_is_not_there_or_not_a_lora_is_named_with_its_key(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    save_lora(tmp_path / "named" / "style.safetensors")
    save_lora(tmp_path / "full" / "model.safetensors", names=("unet.mid.to_q.weight",))
    (tmp_path / "text.safetensors").write_text("not a tensor file")
    found = lora_problems(
        f"[{{id: {tmp_path / 'empty'}}}, {{id: {tmp_path / 'named'}, weight_name: other.safetensors}}, "
        f"{{id: {tmp_path / 'full'}}}, {{id: {tmp_path / 'text.safetensors'}}}]",
    )
    assert len(found) == 4
    assert found[0].startswith("model.loras[0].id: the LoRA adapter") and "holds no .safetensors or .bin" in found[0]
    assert "has no other.safetensors (set model.loras[1].weight_name" in found[1]
    assert found[2].startswith("model.loras[2].id") and "without LoRA tensors" in found[2]
    assert found[3].startswith("model.loras[3].id") and "is not a LoRA adapter: not a readable safetensors" in found[3]


def test_hub_loras_offline_come_from_the_cache_by_file_name(hub_cache: Path):
    commit_dir = hub_cache / "models--someone--cached-lora" / "snapshots" / ("0" * 40)
    save_lora(commit_dir / "lightning_4step.safetensors")
    (hub_cache / "models--someone--cached-lora" / "refs").mkdir()
    (hub_cache / "models--someone--cached-lora" / "refs" / "main").write_text("0" * 40)
    found = lora_problems(
        "[{id: someone/cached-lora, weight_name: lightning_4step.safetensors}, {id: someone/cached-lora}, "
        "{id: someone/absent-lora, weight_name: a.safetensors}]",
    )
    assert len(found) == 2, found
    assert found[0].startswith("model.loras[1].id") and "set model.loras[1].weight_name" in found[0]
    assert found[1].startswith("model.loras[2].id: the LoRA adapter 'someone/absent-lora' is not in the local")
    assert "`hf download someone/absent-lora a.safetensors`" in found[1] and "tiny-random" not in found[1]


class _LoraHub(BaseHTTPRequestHandler):
    """The few Hub answers a LoRA check needs: one repo, ``someone/lora``, holding ``style.safetensors``."""

    COMMIT = "0123456789abcdef0123456789abcdef01234567"

    def _answer(self) -> None:
        if self.path.startswith("/api/models/someone/lora"):
            files = [{"rfilename": "README.md"}, {"rfilename": "style.safetensors"}]
            self._send(200, json.dumps({"id": "someone/lora", "sha": self.COMMIT, "siblings": files}).encode())
        elif self.path == "/someone/lora/resolve/main/style.safetensors":
            self._send(200, b"", {"X-Repo-Commit": self.COMMIT, "ETag": '"style"', "Content-Length": "64"})
        elif self.path.startswith("/someone/lora/"):
            self._send(404, b"", {"X-Error-Code": "EntryNotFound", "X-Error-Message": "Entry not found"})
        else:
            self._send(404, b"", {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})

    def _send(self, status: int, body: bytes, headers: dict | None = None) -> None:
        self.send_response(status)
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body)), **(headers or {})}
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = _answer

    def log_message(self, *args) -> None:  # quiet
        pass


LORA_CHECK = """
from builders.recipe import parse_recipe
from synthcore.availability import lora_needs
text = '''
name: t
model: {loras: [{id: someone/lora}, {id: someone/lora, weight_name: other.safetensors}, {id: someone/absent}]}
classes: {fox: {prompts: [a fox]}}
splits: {train: 1}
'''
for need in lora_needs("model.loras", parse_recipe(text, "r.yaml").model.loras):
    print(need.problem())
"""


@pytest.mark.e2e  # a subprocess: huggingface_hub reads HF_ENDPOINT when it is imported
def test_hub_loras_online_are_found_as_diffusers_finds_them(tmp_path: Path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _LoraHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env |= {"HF_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}", "HF_HOME": str(tmp_path / "hf")}
    try:
        result = subprocess.run(
            [sys.executable, "-c", LORA_CHECK], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0, result.stderr
    guessed, named, absent = result.stdout.strip().splitlines()
    assert guessed == "None", "no weight_name: the repo's only .safetensors file, as diffusers guesses"
    assert named.startswith("model.loras[1].id: the LoRA adapter 'someone/lora' is not a LoRA adapter")
    assert "has no other.safetensors" in named
    assert absent.startswith("model.loras[2].id: the LoRA adapter 'someone/absent' is not on the Hub")


def test_build_exits_4_listing_missing_loras_before_anything_loads(hub_cache: Path, tmp_path: Path, capsys):
    from builders.cli import main

    recipe = write_recipe(
        tmp_path,
        RECIPE.format(
            model="tiny-random",
            model_extra=f", loras: [{{id: someone/absent-lora}}, {{id: {tmp_path}}}]",
            generation="",
            class_extra="",
            extra="scoring: {clip: {model: tiny-random}, resnet50: {weights: tiny-random}}",
        ),
    )
    assert main([str(recipe), "--output-dir", str(tmp_path / "out")]) == 4
    err = capsys.readouterr().err
    assert "2 models this run needs are not available" in err
    assert "- model.loras[0].id: the LoRA adapter 'someone/absent-lora'" in err
    assert f"- model.loras[1].id: the LoRA adapter '{tmp_path}' holds no" in err
    assert not (tmp_path / "out").exists()


def test_tiny_random_is_no_lora(tmp_path: Path):
    with pytest.raises(RecipeError) as caught:
        recipe_for("tiny-random", model_extra=", loras: [{id: tiny-random}]")
    assert any(p.startswith("model.loras[0].id") and "no tiny-random LoRA" in p for p in caught.value.problems)


# -- end to end: datasets from tiny random pipelines of every family ----------------------------------------------
# What each family's pipeline call needs beyond the prompt, to regenerate a row with diffusers alone.
ALONE_ARGUMENTS = {
    "pixart-sigma": {"use_resolution_binning": False, "clean_caption": False},
    "sana": {"use_resolution_binning": False, "clean_caption": False},
}


def family_recipe(tmp_path: Path, name: str, text: str = FAMILY_RECIPE) -> Path:

    negative = "" if name.startswith("flux") else "negative_prompt: blurry"
    return write_recipe(tmp_path, text.format(family=name, model=tiny_family_dir(name), negative=negative))


def regenerated_alone(out: Path, family: str, row: int) -> tuple:
    """Row ``row``'s stored pixels, and the same image made alone by diffusers from the row's prompt and seed."""

    from diffusers import DiffusionPipeline

    data = datasets_rows(out)
    recipe = load_recipe(out / "recipe.yaml")
    kept = np.asarray(Image.open(io.BytesIO(data["image"][row]["bytes"]))).astype(int)
    if isinstance(family_of(recipe), ModularGenerator):
        return modular_alone(tiny_family_dir(family), recipe, data["prompt"][row], data["seed"][row]), kept
    plugin = family_of(recipe)
    pipe = DiffusionPipeline.from_pretrained(tiny_family_dir(family))
    arguments = plugin.guidance_arguments(recipe.generation.guidance_scale) | ALONE_ARGUMENTS.get(family, {})
    if plugin.negative_prompt:
        arguments["negative_prompt"] = data["negative_prompt"][row]
    if recipe.model.max_sequence_length is not None:
        arguments["max_sequence_length"] = recipe.model.max_sequence_length
    alone = pipe(
        prompt=data["prompt"][row],
        generator=torch.Generator().manual_seed(data["seed"][row]),
        num_inference_steps=2,
        height=32,
        width=32,
        output_type="pt",
        **arguments,
    ).images
    return to_uint8_hwc(opaque_rgb(alone))[0].astype(int), kept


def modular_alone(directory: Path, recipe, prompt: str, seed: int) -> np.ndarray:
    """One image made by diffusers' modular pipeline alone, loaded as FLUX.3's card says (the prompt upsampler
    taken out of the blocks), with the recorded guidance, steps and size and a generator seeded with ``seed``."""
    from diffusers import ModularPipeline

    found = ModularPipeline.from_pretrained(str(directory))
    blocks = found.blocks
    blocks.sub_blocks.pop("prompt_upsampler")
    pipe = type(found)(blocks=blocks, pretrained_model_name_or_path=str(directory))
    pipe.load_components()
    if getattr(pipe, "guider", None) is not None:
        pipe.update_components(guider=pipe.guider.new(guidance_scale=recipe.generation.guidance_scale))
    gen = recipe.generation
    alone = pipe(
        prompt=prompt,
        generator=torch.Generator().manual_seed(seed),
        num_inference_steps=gen.num_inference_steps,
        height=gen.height,
        width=gen.width,
        output_type="np",
        output="images",
    )[0]
    return (alone * 255).round().astype(int)


def datasets_rows(out: Path) -> dict:

    files = sorted((out / "data").glob("*.parquet"))
    return pq.read_table(files, columns=["id", "prompt", "negative_prompt", "seed", "image"]).to_pydict()


@pytest.fixture(scope="module")
def family_build(tmp_path_factory) -> Callable[[str], Path]:
    """``family_build(name)``: ``FAMILY_RECIPE`` for the tiny pipeline ``name``, built once for the module by one
    process, this one (the plain build both the process-count and the LoRA tests compare with). Read-only."""
    built: dict[str, Path] = {}

    def build(family: str) -> Path:
        if family not in built:
            root = tmp_path_factory.mktemp(f"family-{family}")
            build_here(str(family_recipe(root, family)), "--output-dir", str(root / "one"), env=SAME_THREADS)
            built[family] = root / "one"
        return built[family]

    return build


@pytest.mark.e2e
@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_every_family_builds_the_same_dataset_on_1_and_2_processes(family: str, family_build, tmp_path: Path):

    recipe = family_recipe(tmp_path, family)
    one, two = family_build(family), tmp_path / "two"
    run_build(str(recipe), "--output-dir", str(two), env=SAME_THREADS, launcher=[*ACCELERATE, "--num_processes", "2"])
    assert json.loads((two / ".synthdata" / "run.json").read_text())["processes"] == 2
    expected = table(one)
    assert len(expected["id"]) == 12 and len(set(expected["image"])) == 12
    assert table(two) == expected

    loaded = datasets.load_dataset(str(one))
    assert {split: loaded[split].num_rows for split in loaded} == {"train": 8, "test": 4}
    assert all(abs(sum(p) - 1) < 1e-4 for p in loaded["train"]["clip_probs"]), "scored on the device tensors"
    info = json.loads((one / "build_info.json").read_text(encoding="utf-8"))
    stored = load_recipe(one / "recipe.yaml")
    family_plugin = family_of(stored)
    assert info["generator"]["family"] == family_plugin.label and stored.model.pipeline in info["generator"]["pipeline"]
    assert info["fingerprint"]["model.pipeline"] == stored.model.pipeline
    assert "guidance" in (one / "README.md").read_text(encoding="utf-8")

    alone, kept = regenerated_alone(one, family, row=1)
    assert abs(alone - kept).max() <= 2, "a row's seed regenerates its image alone, batch or process aside"


# The tiny pipelines of the families run from their pipeline's own description (the 2026 families of issue 27).
SEAM_FAMILIES = tuple(
    name for g in FAMILIES if isinstance(g, SignatureGenerator | ModularGenerator) for name in g.tiny_names
)


@pytest.mark.e2e
@pytest.mark.parametrize("family", SEAM_FAMILIES)
def test_the_2026_families_build_the_same_dataset_on_3_processes(family: str, family_build, tmp_path: Path):
    """Three ranks claim the six shards of two images between them; the rows and their bytes are one process's."""
    recipe = family_recipe(tmp_path, family)
    three = tmp_path / "three"
    run_build(str(recipe), "--output-dir", str(three), env=SAME_THREADS, launcher=[*ACCELERATE, "--num_processes", "3"])
    assert json.loads((three / ".synthdata" / "run.json").read_text())["processes"] == 3
    assert table(three) == table(family_build(family))


@pytest.mark.e2e
@pytest.mark.parametrize("family", ["flux-schnell", "sd3", "sana"])
def test_text_encoders_in_their_own_dtype_feed_the_denoiser_its_dtype(family: str, tmp_path: Path):
    text = FAMILY_RECIPE.replace("safety_checker: false}", "safety_checker: false, text_encoder_dtype: bfloat16}")
    out = tmp_path / "out"
    build_here(str(family_recipe(tmp_path, family, text)), "--output-dir", str(out), env=SAME_THREADS)
    info = json.loads((out / "build_info.json").read_text(encoding="utf-8"))
    assert info["fingerprint"]["model.text_encoder_dtype"] == "bfloat16"
    assert load_recipe(out / "recipe.yaml").model.text_encoder_dtype == "bfloat16"
    assert datasets.load_dataset(str(out))["train"].num_rows == 8
    assert "cpu, float32 (text encoders bfloat16)" in (out / "README.md").read_text(encoding="utf-8")


HALF_FLAGGING_RECIPE = FAMILY_RECIPE.replace(
    "safety_checker: false}", "safety_checker: true, safety_checker_id: {checker}, max_regenerations: 2}"
)


@pytest.fixture(scope="module")
def half_flagging_checker(tmp_path_factory) -> Path:
    """The standalone checker with its concept threshold at the median score of tiny SDXL images."""

    from diffusers import DiffusionPipeline
    from diffusers.pipelines.stable_diffusion.safety_checker import (
        StableDiffusionSafetyChecker,
        cosine_distance,
    )
    from transformers import CLIPImageProcessor

    checker_dir = tmp_path_factory.mktemp("models") / "checker"
    shutil.copytree(tiny_safety_checker_dir(), checker_dir)
    pipe = DiffusionPipeline.from_pretrained(tiny_family_dir("sdxl"))
    checker = StableDiffusionSafetyChecker.from_pretrained(checker_dir)
    with torch.no_grad():
        images = pipe(
            ["a red fox"] * 8,
            negative_prompt=["blurry"] * 8,
            num_inference_steps=2,
            height=32,
            width=32,
            output_type="pil",
            generator=[torch.Generator().manual_seed(i) for i in range(8)],
        ).images
        clip_input = CLIPImageProcessor.from_pretrained(checker_dir)(images, return_tensors="pt").pixel_values
        scores = cosine_distance(
            checker.visual_projection(checker.vision_model(clip_input)[1]), checker.concept_embeds
        )[:, 0]
        checker.concept_embeds_weights.fill_(scores.median().item())
    checker.save_pretrained(checker_dir)
    return checker_dir


@pytest.mark.e2e
def test_a_family_without_a_checker_gets_the_standalone_one(half_flagging_checker: Path, tmp_path: Path):

    text = HALF_FLAGGING_RECIPE.format(
        family="sdxl", model=tiny_family_dir("sdxl"), negative="negative_prompt: blurry", checker=half_flagging_checker
    )
    out = tmp_path / "out"
    result = build_here(str(write_recipe(tmp_path, text)), "--output-dir", str(out))

    rows = pq.read_table(sorted((out / "data").glob("*.parquet")), columns=["safety_regenerations", "image"])
    rows = rows.to_pydict()
    assert any(n > 0 for n in rows["safety_regenerations"]), "the half-flagging checker must have fired"
    dropped = int(result.stdout.split(" dropped by the safety checker")[0].split()[-1])
    assert len(rows["image"]) + dropped == 12
    for image in rows["image"]:
        assert np.asarray(Image.open(io.BytesIO(image["bytes"]))).any(), "no blacked-out image may be kept"
    info = json.loads((out / "build_info.json").read_text(encoding="utf-8"))
    assert (
        info["generator"]["safety_checker"] == f"standalone Stable Diffusion safety checker ({half_flagging_checker})"
    )
    assert "standalone Stable Diffusion safety checker" in (out / "README.md").read_text(encoding="utf-8")


def make_tiny_lora(family: str, directory: Path) -> Path:
    """A random LoRA on the attention projections of a tiny family's denoiser, saved as diffusers saves LoRAs."""
    from diffusers import DiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pipe = DiffusionPipeline.from_pretrained(tiny_family_dir(family))
    denoiser = "unet" if hasattr(pipe, "unet") else "transformer"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        getattr(pipe, denoiser).add_adapter(
            LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False)
        )
    layers = get_peft_model_state_dict(getattr(pipe, denoiser))
    type(pipe).save_lora_weights(directory, **{f"{denoiser}_lora_layers": layers}, weight_name="tiny_lora.safetensors")
    return directory


@pytest.mark.e2e
@pytest.mark.parametrize("family", ["sdxl", "flux-schnell"])
def test_loras_are_fused_at_their_scale_and_named_by_the_card(family: str, family_build, tmp_path: Path):

    lora = make_tiny_lora(family, tmp_path / "lora")
    plain = family_recipe(tmp_path, family)
    runs = {None: family_build(family)}
    for scale in (0.0, 1.0):
        text = plain.read_text(encoding="utf-8").replace(
            "safety_checker: false}",
            f"safety_checker: false, loras: [{{id: {lora}, weight_name: tiny_lora.safetensors, scale: {scale}}}]}}",
        )
        out = tmp_path / f"out-{scale}"
        build_here(str(write_recipe(tmp_path, text, f"r-{scale}.yaml")), "--output-dir", str(out), env=SAME_THREADS)
        runs[scale] = out
    assert table(runs[0.0])["image"] == table(runs[None])["image"], "a LoRA at scale 0 changes nothing"
    assert table(runs[1.0])["image"] != table(runs[None])["image"]
    card = (runs[1.0] / "README.md").read_text(encoding="utf-8")
    assert "LoRAs (fused)" in card and "tiny_lora.safetensors" in card
    info = json.loads((runs[1.0] / "build_info.json").read_text(encoding="utf-8"))
    assert info["fingerprint"]["model.loras"] == [
        {"id": str(lora), "weight_name": "tiny_lora.safetensors", "scale": 1.0}
    ]


def test_build_refuses_an_uncached_hub_model_before_loading_anything(hub_cache: Path, tmp_path: Path):
    from builders.cli import main

    recipe = write_recipe(
        tmp_path, RECIPE.format(model="someone/no-such-model", model_extra="", generation="", class_extra="", extra="")
    )
    result = run_main(main, str(recipe), "--output-dir", str(tmp_path / "out"))
    assert result.returncode == 4  # a model that is not available (the family cannot be read either)
    assert "- model.id: the diffusers pipeline 'someone/no-such-model' is not in the local" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.e2e
def test_the_generation_benchmark_takes_a_family():
    ratio = benchmark_headline(
        "generation.py", "--family", "sd3", "--steps", "2", "--num-images", "2", "--batch-size", "2", "--size", "32"
    )
    assert 0 < ratio < 10


def test_every_family_owns_a_tiny_pipeline_and_the_family_tests_run_each():
    """Stable Diffusion's tiny pipeline is the shared ``tiny-random``; every other family writes its own."""
    assert [g.name for g in FAMILIES if not g.tiny_names] == ["stable-diffusion"]
    assert TINY_FAMILIES == tuple(name for g in FAMILIES for name in g.tiny_names)
    with pytest.raises(ValueError, match="no tiny random pipeline 'nope'; known: sdxl, sd3"):
        tiny_family_dir("nope")
