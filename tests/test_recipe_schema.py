"""The recipe's schema declares itself: every key has a description and says what it decides (its content mark),
the reference page docs/recipe.md is generated from them, and the content fingerprint derived from the marks keeps
the values builds recorded before it was (a changed value would make users' finished shards be made again)."""

from __future__ import annotations

import hashlib
import json

import pytest
from pydantic import Field

from builders.content import CONTENT_KINDS, mark, marked_fields
from builders.plan import RECORDED_ORDER, content_fingerprint
from builders.recipe import OutputSettings, Recipe, load_recipe
from builders.recipe_docs import render, sections
from tests.helpers import ROOT

VARIATIONS = {
    "as shipped": {},
    "no safety checker": {"model": {"safety_checker": False}},
    "memory knobs": {
        "model": {"text_encoder_dtype": "bfloat16", "vae_tiling": True, "cpu_offload": True, "max_sequence_length": 77}
    },
    "lora": {"model": {"loras": [{"id": "some-org/some-lora", "weight_name": "w.safetensors", "scale": 0.5}]}},
    "scoring": {"scoring": {"clip": {"label_templates": ["a {label}", "b {label}"]}, "resnet50": {"enabled": False}}},
    "output": {"seed": 7, "output": {"image_format": "webp", "quality": 80, "shard_size": 3}},
    "labels": {"classes": {"fox": {"label_text": "a red fox", "imagenet_classes": ["red fox"]}}},
}
# SHA-256 (first 16 hex digits) of json.dumps(content_fingerprint(...), ensure_ascii=False), entries in their order,
# as the hand-written fingerprint of commit 9302093 gave them: recipe | variation | device.
RECORDED = {
    "fox_dog.yaml|as shipped|cpu": "8485a0b1cc7ffac0",
    "fox_dog.yaml|as shipped|cuda": "4f7d937f63c4a895",
    "fox_dog.yaml|no safety checker|cpu": "81b56b799d3ac15c",
    "fox_dog.yaml|no safety checker|cuda": "42c9803324a30c77",
    "fox_dog.yaml|memory knobs|cpu": "9a82fabdc41642ae",
    "fox_dog.yaml|memory knobs|cuda": "f064202555c792f1",
    "fox_dog.yaml|lora|cpu": "261a48a6f1adfde2",
    "fox_dog.yaml|lora|cuda": "b5504c30b114bd10",
    "fox_dog.yaml|scoring|cpu": "bc0c281a91cdd437",
    "fox_dog.yaml|scoring|cuda": "bbebb67abf1da3c6",
    "fox_dog.yaml|output|cpu": "9c6c6ffe90e008ba",
    "fox_dog.yaml|output|cuda": "50f3b99c6ed3583f",
    "fox_dog.yaml|labels|cpu": "101ba557ca29b489",
    "fox_dog.yaml|labels|cuda": "9be8045f83086d7d",
    "fox_dog_guided.yaml|as shipped|cpu": "8485a0b1cc7ffac0",
    "fox_dog_guided.yaml|as shipped|cuda": "4f7d937f63c4a895",
    "fox_dog_guided.yaml|no safety checker|cpu": "81b56b799d3ac15c",
    "fox_dog_guided.yaml|no safety checker|cuda": "42c9803324a30c77",
    "fox_dog_guided.yaml|memory knobs|cpu": "9a82fabdc41642ae",
    "fox_dog_guided.yaml|memory knobs|cuda": "f064202555c792f1",
    "fox_dog_guided.yaml|lora|cpu": "261a48a6f1adfde2",
    "fox_dog_guided.yaml|lora|cuda": "b5504c30b114bd10",
    "fox_dog_guided.yaml|scoring|cpu": "bc0c281a91cdd437",
    "fox_dog_guided.yaml|scoring|cuda": "bbebb67abf1da3c6",
    "fox_dog_guided.yaml|output|cpu": "9c6c6ffe90e008ba",
    "fox_dog_guided.yaml|output|cuda": "50f3b99c6ed3583f",
    "fox_dog_guided.yaml|labels|cpu": "101ba557ca29b489",
    "fox_dog_guided.yaml|labels|cuda": "9be8045f83086d7d",
    "fox_dog_flux_schnell.yaml|as shipped|cpu": "0ce99756f7cae20c",
    "fox_dog_flux_schnell.yaml|as shipped|cuda": "634c9a7f93ebcfa6",
    "fox_dog_flux_schnell.yaml|no safety checker|cpu": "6bdf6a425f5b94aa",
    "fox_dog_flux_schnell.yaml|no safety checker|cuda": "0f3aed9a1a2fd734",
    "fox_dog_flux_schnell.yaml|memory knobs|cpu": "b0c3eb56c7e5b658",
    "fox_dog_flux_schnell.yaml|memory knobs|cuda": "0eaf28b1ebb4511b",
    "fox_dog_flux_schnell.yaml|lora|cpu": "26831ea31dd98cb7",
    "fox_dog_flux_schnell.yaml|lora|cuda": "f260672ade19f2e5",
    "fox_dog_flux_schnell.yaml|scoring|cpu": "830ae5e48dbfc4e3",
    "fox_dog_flux_schnell.yaml|scoring|cuda": "34963770f64ffe81",
    "fox_dog_flux_schnell.yaml|output|cpu": "32d2ae4abe6dabd1",
    "fox_dog_flux_schnell.yaml|output|cuda": "7925963e98194572",
    "fox_dog_flux_schnell.yaml|labels|cpu": "fb666522b920180a",
    "fox_dog_flux_schnell.yaml|labels|cuda": "01ea1432919303a1",
    "fox_dog_flux3.yaml|as shipped|cpu": "f41b3b0f550572c7",
    "fox_dog_flux3.yaml|as shipped|cuda": "48ac71c468c4aa74",
    "fox_dog_flux3.yaml|no safety checker|cpu": "e52462eb9747e7a9",
    "fox_dog_flux3.yaml|no safety checker|cuda": "6c5ae8ff4554fa99",
    "fox_dog_flux3.yaml|memory knobs|cpu": "fa7847385a544b37",
    "fox_dog_flux3.yaml|memory knobs|cuda": "7bbc4a3a902dc88e",
    "fox_dog_flux3.yaml|lora|cpu": "b557efc6a0f70b1f",
    "fox_dog_flux3.yaml|lora|cuda": "edf516cb9e8b6ceb",
    "fox_dog_flux3.yaml|scoring|cpu": "cb27cc320c20a4d6",
    "fox_dog_flux3.yaml|scoring|cuda": "05d516ab546e066a",
    "fox_dog_flux3.yaml|output|cpu": "8cdfcf118b375df5",
    "fox_dog_flux3.yaml|output|cuda": "3b396e88aac494e5",
    "fox_dog_flux3.yaml|labels|cpu": "0ab03fa97010359a",
    "fox_dog_flux3.yaml|labels|cuda": "4253af1729175872",
    "fox_dog_levers.yaml|as shipped|cpu": "779d44e6701a0b25",
    "fox_dog_levers.yaml|as shipped|cuda": "c94d9fab6890f05f",
    "fox_dog_levers.yaml|no safety checker|cpu": "b1c1b09ffec138d1",
    "fox_dog_levers.yaml|no safety checker|cuda": "1c95114b281e69f0",
    "fox_dog_levers.yaml|memory knobs|cpu": "b6cb0916cb37391a",
    "fox_dog_levers.yaml|memory knobs|cuda": "f6652f9da76b98fd",
    "fox_dog_levers.yaml|lora|cpu": "4550910ee601a442",
    "fox_dog_levers.yaml|lora|cuda": "0ea72408cfbb3331",
    "fox_dog_levers.yaml|scoring|cpu": "7e3aa64ea7c69765",
    "fox_dog_levers.yaml|scoring|cuda": "9d36ba2ef81421d1",
    "fox_dog_levers.yaml|output|cpu": "b1bf5460dd7f7745",
    "fox_dog_levers.yaml|output|cuda": "88ba7dbfa28b36bb",
    "fox_dog_levers.yaml|labels|cpu": "f6326f347f06b82e",
    "fox_dog_levers.yaml|labels|cuda": "1ddc17deecfdcfd1",
    "fox_dog_sdxl_turbo.yaml|as shipped|cpu": "1f10368d3a8a59d7",
    "fox_dog_sdxl_turbo.yaml|as shipped|cuda": "0a1640b2afab1ab9",
    "fox_dog_sdxl_turbo.yaml|no safety checker|cpu": "b99b26ff105473c1",
    "fox_dog_sdxl_turbo.yaml|no safety checker|cuda": "9eb821bfc13fa550",
    "fox_dog_sdxl_turbo.yaml|memory knobs|cpu": "069a2ad24be55002",
    "fox_dog_sdxl_turbo.yaml|memory knobs|cuda": "bc0c72174638fbdf",
    "fox_dog_sdxl_turbo.yaml|lora|cpu": "3c18b3e2e2f5e80d",
    "fox_dog_sdxl_turbo.yaml|lora|cuda": "592379d087e534be",
    "fox_dog_sdxl_turbo.yaml|scoring|cpu": "d7f7963032dcf1bf",
    "fox_dog_sdxl_turbo.yaml|scoring|cuda": "9fc8a3215f7b532b",
    "fox_dog_sdxl_turbo.yaml|output|cpu": "73f58263b2854897",
    "fox_dog_sdxl_turbo.yaml|output|cuda": "7cd24f90d05cdf0d",
    "fox_dog_sdxl_turbo.yaml|labels|cpu": "3ee09bd56cc07d3a",
    "fox_dog_sdxl_turbo.yaml|labels|cuda": "145c8c3e7706f2ff",
    "fox_dog_z_image_turbo.yaml|as shipped|cpu": "f5fa025d71683c60",
    "fox_dog_z_image_turbo.yaml|as shipped|cuda": "ab1aa8be277dce83",
    "fox_dog_z_image_turbo.yaml|no safety checker|cpu": "e63b5c3025b7d3b9",
    "fox_dog_z_image_turbo.yaml|no safety checker|cuda": "1b157ea90b7464da",
    "fox_dog_z_image_turbo.yaml|memory knobs|cpu": "60c73179eed6c4b0",
    "fox_dog_z_image_turbo.yaml|memory knobs|cuda": "618551cb12903109",
    "fox_dog_z_image_turbo.yaml|lora|cpu": "0c9bb66bd8e9f2ed",
    "fox_dog_z_image_turbo.yaml|lora|cuda": "ade58ba2891f5391",
    "fox_dog_z_image_turbo.yaml|scoring|cpu": "d0f229ccb56420c0",
    "fox_dog_z_image_turbo.yaml|scoring|cuda": "67c4b3b3f0bd7575",
    "fox_dog_z_image_turbo.yaml|output|cpu": "5f5e0b9fa94788ec",
    "fox_dog_z_image_turbo.yaml|output|cuda": "3ca7df2adfc478a0",
    "fox_dog_z_image_turbo.yaml|labels|cpu": "03fc6107f03ff390",
    "fox_dog_z_image_turbo.yaml|labels|cuda": "048ca2e3d395f593",
    "fox_dog_flux2_klein.yaml|as shipped|cpu": "700a152414e5b14c",
    "fox_dog_flux2_klein.yaml|as shipped|cuda": "ea302343eaf65f48",
    "fox_dog_flux2_klein.yaml|no safety checker|cpu": "066774ad33dcb7d7",
    "fox_dog_flux2_klein.yaml|no safety checker|cuda": "0f973aebf89846b3",
    "fox_dog_flux2_klein.yaml|memory knobs|cpu": "9024fc2823edb38f",
    "fox_dog_flux2_klein.yaml|memory knobs|cuda": "09fe2abbf8e0382f",
    "fox_dog_flux2_klein.yaml|lora|cpu": "191d69a21e24f79f",
    "fox_dog_flux2_klein.yaml|lora|cuda": "262de17c41de7458",
    "fox_dog_flux2_klein.yaml|scoring|cpu": "59e3e42f9b989ca8",
    "fox_dog_flux2_klein.yaml|scoring|cuda": "222fee57a1861fcf",
    "fox_dog_flux2_klein.yaml|output|cpu": "38a905df440814f6",
    "fox_dog_flux2_klein.yaml|output|cuda": "991f745834027aba",
    "fox_dog_flux2_klein.yaml|labels|cpu": "0ddbb6b47b51f1e9",
    "fox_dog_flux2_klein.yaml|labels|cuda": "baf2b363a8bff9d5",
    "fox_dog_krea2_turbo.yaml|as shipped|cpu": "04eeda7692d677e4",
    "fox_dog_krea2_turbo.yaml|as shipped|cuda": "68f225ec74229180",
    "fox_dog_krea2_turbo.yaml|no safety checker|cpu": "b146be554aa20064",
    "fox_dog_krea2_turbo.yaml|no safety checker|cuda": "8fdf745a8420a1d0",
    "fox_dog_krea2_turbo.yaml|memory knobs|cpu": "3a9208f5eb6feaeb",
    "fox_dog_krea2_turbo.yaml|memory knobs|cuda": "7b35d281da3eafe6",
    "fox_dog_krea2_turbo.yaml|lora|cpu": "eac522e6aab975f8",
    "fox_dog_krea2_turbo.yaml|lora|cuda": "f185d07c66ece3fe",
    "fox_dog_krea2_turbo.yaml|scoring|cpu": "8c11fdcd5a20f015",
    "fox_dog_krea2_turbo.yaml|scoring|cuda": "d8d4c9fb824bfdad",
    "fox_dog_krea2_turbo.yaml|output|cpu": "f3b777b960d6a442",
    "fox_dog_krea2_turbo.yaml|output|cuda": "38171aca6d445b40",
    "fox_dog_krea2_turbo.yaml|labels|cpu": "f582c259ee6bfb69",
    "fox_dog_krea2_turbo.yaml|labels|cuda": "dba05f5bddeacc5d",
    "fox_dog_qwen_image21_turbo.yaml|as shipped|cpu": "1c335bae6e90b969",
    "fox_dog_qwen_image21_turbo.yaml|as shipped|cuda": "14b438d7d9079462",
    "fox_dog_qwen_image21_turbo.yaml|no safety checker|cpu": "d044d647f74e02bd",
    "fox_dog_qwen_image21_turbo.yaml|no safety checker|cuda": "622db4670868ea2e",
    "fox_dog_qwen_image21_turbo.yaml|memory knobs|cpu": "ac668931787831de",
    "fox_dog_qwen_image21_turbo.yaml|memory knobs|cuda": "d84085ca259a891c",
    "fox_dog_qwen_image21_turbo.yaml|lora|cpu": "74eb13918e20e776",
    "fox_dog_qwen_image21_turbo.yaml|lora|cuda": "e248fb6cea32daf9",
    "fox_dog_qwen_image21_turbo.yaml|scoring|cpu": "b6370d0166547d4b",
    "fox_dog_qwen_image21_turbo.yaml|scoring|cuda": "ba72b476f1b6053a",
    "fox_dog_qwen_image21_turbo.yaml|output|cpu": "2932e42a422f14c4",
    "fox_dog_qwen_image21_turbo.yaml|output|cuda": "c25859e66cbb6147",
    "fox_dog_qwen_image21_turbo.yaml|labels|cpu": "53c0be00b64425d5",
    "fox_dog_qwen_image21_turbo.yaml|labels|cuda": "ce97bf452bcde699",
    "smoke.yaml|as shipped|cpu": "ceb3a5bda0799311",
    "smoke.yaml|as shipped|cuda": "c3b26e7ddf75722a",
    "smoke.yaml|no safety checker|cpu": "86e53d07961f3dee",
    "smoke.yaml|no safety checker|cuda": "0d723e3b44c9473d",
    "smoke.yaml|memory knobs|cpu": "6b6520a04a26714e",
    "smoke.yaml|memory knobs|cuda": "bc687cf91c37f66e",
    "smoke.yaml|lora|cpu": "8f71de1fa1342c3c",
    "smoke.yaml|lora|cuda": "4eb085af20e5e051",
    "smoke.yaml|scoring|cpu": "dc5f58d4ded31b69",
    "smoke.yaml|scoring|cuda": "3048b9e63021010e",
    "smoke.yaml|output|cpu": "468e4052dbbbddb9",
    "smoke.yaml|output|cuda": "3a531e8960acff64",
    "smoke.yaml|labels|cpu": "ba9c2a1bbe6cf9c6",
    "smoke.yaml|labels|cuda": "1d3106dbb592a486",
}


def _merge(base: dict, change: dict) -> dict:
    merged = dict(base)
    for key, value in change.items():
        nested = isinstance(value, dict) and isinstance(base.get(key), dict)
        merged[key] = _merge(base[key], value) if nested else value
    return merged


@pytest.mark.parametrize("case", sorted(RECORDED))
def test_fingerprints_keep_the_values_builds_recorded(case: str):
    name, variation, device = case.split("|")
    base = load_recipe(ROOT / "recipes" / name)
    recipe = Recipe.model_validate(_merge(base.model_dump(mode="json"), VARIATIONS[variation]))
    fingerprint = content_fingerprint(recipe, device, "float32" if device == "cpu" else "float16")
    text = json.dumps(fingerprint, ensure_ascii=False)
    assert hashlib.sha256(text.encode()).hexdigest()[:16] == RECORDED[case], text


def test_every_shipped_recipe_and_variation_is_recorded():
    names = sorted(path.name for path in (ROOT / "recipes").glob("*.yaml"))
    assert sorted(RECORDED) == sorted(f"{n}|{v}|{d}" for n in names for v in VARIATIONS for d in ("cpu", "cuda"))


def test_every_recipe_key_says_what_it_decides():
    unclassified = [path for path, field in marked_fields(Recipe) if mark(field).get("content") not in CONTENT_KINDS]
    assert not unclassified, f"mark these fields json_schema_extra={{'content': True/'key'/False}}: {unclassified}"


def test_every_recipe_key_has_a_description():
    missing = [
        f"{path}.{name}".lstrip(".")
        for path, model, _, _ in sections(Recipe, "", "", "none")
        for name, field in model.model_fields.items()
        if not field.description
    ]
    assert not missing, f"give these fields a Field(description=...): {missing}"


def test_the_recipe_page_is_generated_from_the_schema():
    page = (ROOT / "docs" / "recipe.md").read_text(encoding="utf-8")
    assert page == render(), "docs/recipe.md differs from the schema: python -m builders.recipe_docs > docs/recipe.md"


def test_a_new_content_key_joins_the_fingerprint_after_the_recorded_ones():
    class Dithered(OutputSettings):
        dither: bool = Field(default=False, description="dither", json_schema_extra={"content": True})

    recipe = load_recipe(ROOT / "recipes" / "smoke.yaml")
    before = content_fingerprint(recipe, "cpu", "float32")
    fingerprint = content_fingerprint(recipe.model_copy(update={"output": Dithered(dither=True)}), "cpu", "float32")
    assert list(fingerprint) == [*before, "output.dither"] and fingerprint["output.dither"] is True
    assert list(before) == [key for key in RECORDED_ORDER if key in before]
