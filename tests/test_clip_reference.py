"""CLIP scoring equals transformers' own CLIPProcessor + CLIPModel, whatever the image's size and mode; a row's
scores do not depend on the rows batched with it; a directory saved by the installed transformers is accepted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from eval.preprocess import rgb_tensor
from eval.scorers.clip import IMAGE_CHUNK, Clip, LoadedClip
from synthcore.availability import transformers_model
from synthcore.tiny import tiny_models_dir

CLASSES = ["fox", "dog", "cat"]
TEMPLATE = "a photo of a {label}"


def picture(mode: str, width: int, height: int, seed: int) -> Image.Image:
    """Random pixels (with a random alpha channel) in the given mode; 'P' is a 64-colour palette image."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 4), dtype=np.uint8)
    image = Image.fromarray(pixels, "RGBA")
    return image.convert("RGB").quantize(64) if mode == "P" else image.convert(mode)


PICTURES = [
    picture(mode, width, height, seed)
    for seed, (mode, width, height) in enumerate(
        [
            ("RGB", 50, 37),
            ("L", 40, 40),
            ("RGBA", 20, 64),
            ("P", 33, 45),
            ("RGB", 32, 32),
            ("CMYK", 300, 97),
            ("LA", 77, 51),
        ]
    )
]


@pytest.fixture(scope="module")
def saved_clip(tmp_path_factory) -> Path:
    """The tiny CLIP saved by the installed transformers' ``save_pretrained`` (processor_config.json, no
    preprocessor_config.json in transformers 5)."""
    from transformers import CLIPModel, CLIPProcessor

    source = tiny_models_dir() / "clip"
    directory = tmp_path_factory.mktemp("clip") / "my-clip"
    CLIPModel.from_pretrained(source).save_pretrained(directory)
    CLIPProcessor.from_pretrained(source).save_pretrained(directory)
    return directory


def scored(clip: Clip, images: list[Image.Image], labels: list[int], prompts: list[str | None]) -> dict:
    loaded = LoadedClip(clip, CLASSES, [TEMPLATE])
    return loaded.score([rgb_tensor(image, clip.device) for image in images], torch.tensor(labels), prompts)


def test_a_clip_directory_saved_by_the_installed_transformers_is_accepted(saved_clip: Path):
    assert transformers_model("scoring.clip.model", str(saved_clip), "CLIP model").problem() is None


def test_a_clip_directory_with_processor_config_only_is_complete(tmp_path: Path):
    for name in ("config.json", "model.safetensors", "processor_config.json", "tokenizer.json"):
        (tmp_path / name).write_text("{}")
    assert transformers_model("scoring.clip.model", str(tmp_path), "CLIP model").problem() is None
    (tmp_path / "processor_config.json").unlink()
    problem = transformers_model("scoring.clip.model", str(tmp_path), "CLIP model").problem()
    assert "has no preprocessor_config.json or processor_config.json" in problem


@pytest.mark.e2e
def test_clip_columns_equal_clipprocessor_on_any_size_and_mode(saved_clip: Path):
    from transformers import CLIPModel, CLIPProcessor

    prompts = [f"a {mode} picture of a fox" for mode in ("rgb", "grey", "clear", "palette", "small", "print", "la")]
    processor, model = CLIPProcessor.from_pretrained(saved_clip), CLIPModel.from_pretrained(saved_clip).eval()
    with torch.no_grad():
        reference = model(
            **processor(
                text=[TEMPLATE.format(label=c) for c in CLASSES], images=PICTURES, padding=True, return_tensors="pt"
            )
        )
        prompt_embeds = model.get_text_features(
            **processor(text=prompts, padding=True, return_tensors="pt")
        ).pooler_output
    prompt_embeds = torch.nn.functional.normalize(prompt_embeds, dim=-1)
    columns = scored(Clip(str(saved_clip), "cpu"), PICTURES, [0] * len(PICTURES), prompts)
    probs = reference.logits_per_image.softmax(dim=-1).numpy()
    np.testing.assert_allclose(columns["clip_probs"], probs, atol=1e-5)
    np.testing.assert_allclose(columns["clip_embedding"], reference.image_embeds.numpy(), atol=1e-5)
    expected_scores = (100 * (reference.image_embeds * prompt_embeds).sum(-1)).clamp(min=0).numpy()
    np.testing.assert_allclose(columns["clip_score"], expected_scores, atol=1e-3)  # 1e-5 of the 0-100 scale


@pytest.mark.e2e
def test_a_rows_scores_do_not_depend_on_its_batch():
    clip = Clip("tiny-random", "cpu")
    many = PICTURES * 3  # more rows than one chunk, so the row lands in a different chunk position
    assert len(many) > IMAGE_CHUNK
    prompts = [f"prompt {i}" for i in range(len(many))]
    labels = [i % len(CLASSES) for i in range(len(many))]
    together = scored(clip, many, labels, prompts)
    for row in (0, 5, len(many) - 1):
        alone = scored(clip, [many[row]], [labels[row]], [prompts[row]])
        for column, values in alone.items():
            assert values[0] == together[column][row], (column, row)
