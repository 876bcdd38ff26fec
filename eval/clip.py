"""CLIP: zero-shot class probabilities and CLIPScore, computed on device tensors.

``Clip`` wraps a transformers ``CLIPModel`` and its ``CLIPProcessor`` (a Hub id, a local directory, or
``tiny-random``): images go through the processor's own resize/crop/normalize values, in torch on the images'
device; texts go through the processor's tokenizer, truncated to the model's context (77 tokens) with a warning.
``ClipScorer`` turns it into the dataset's ``clip_*`` columns.
"""

from __future__ import annotations

import logging
from typing import Sequence

import datasets
import torch
import torch.nn.functional as F

from builders.models import resolve
from eval.preprocess import Images, Preprocess

log = logging.getLogger(__name__)


def clip_features(class_names: list[str]) -> dict:
    return {
        "clip_probs": datasets.Sequence(datasets.Value("float32")),
        "clip_pred": datasets.ClassLabel(names=class_names),
        "clip_true_prob": datasets.Value("float32"),
        "clip_score": datasets.Value("float32"),
    }


def clip_score(image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
    """CLIPScore of matching rows of unit embeddings: 100 * cosine similarity, clamped at 0 (Hessel et al., 2021)."""
    return (100 * (image_embeds * text_embeds).sum(-1)).clamp(min=0)


def processor_preprocess(image_processor) -> Preprocess:
    """The processor's resize, crop and normalization, as torch operations."""
    from transformers.image_utils import pil_torch_interpolation_mapping

    size, crop = image_processor.size, image_processor.crop_size
    resize = (size["shortest_edge"],) if size.get("shortest_edge") else (size["height"], size["width"])
    return Preprocess(
        resize=resize,
        crop=(crop["height"], crop["width"]),
        mean=tuple(image_processor.image_mean),
        std=tuple(image_processor.image_std),
        interpolation=pil_torch_interpolation_mapping[image_processor.resample],
    )


class Clip:
    """A CLIP model and its processor on one device, giving unit-norm image and text embeddings (float32)."""

    def __init__(self, ref: str, device: str | torch.device, dtype: torch.dtype = torch.float32):
        from transformers import CLIPModel, CLIPProcessor

        path = resolve(ref, "clip")
        self.ref = ref
        self.device = torch.device(device)
        self.dtype = dtype
        self.processor = CLIPProcessor.from_pretrained(path)
        self.model = CLIPModel.from_pretrained(path, dtype=dtype).to(self.device).eval()
        self.preprocess = processor_preprocess(self.processor.image_processor)
        self.max_tokens = min(self.processor.tokenizer.model_max_length, self.model.config.text_config.max_position_embeddings)

    @property
    def logit_scale(self) -> torch.Tensor:
        """The temperature CLIP was trained with (exp of the learned log scale): zero-shot logits use it."""
        return self.model.logit_scale.exp().float()

    @torch.inference_mode()
    def embed_images(self, images: Images) -> torch.Tensor:
        features = self.model.get_image_features(pixel_values=self.preprocess(images, self.dtype)).pooler_output
        return F.normalize(features.float(), dim=-1)

    @torch.inference_mode()
    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        self._warn_if_truncated(texts)
        tokens = self.processor.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
        ).to(self.device)
        features = self.model.get_text_features(**tokens).pooler_output
        return F.normalize(features.float(), dim=-1)

    def _warn_if_truncated(self, texts: Sequence[str]) -> None:
        lengths = [len(ids) for ids in self.processor.tokenizer(list(texts), verbose=False)["input_ids"]]
        for text, length in zip(texts, lengths):
            if length > self.max_tokens:
                log.warning("CLIP text truncated from %d to %d tokens (the model's context); it is scored as cut: %r",
                            length, self.max_tokens, text)

    def class_embeddings(self, label_texts: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
        """One unit embedding per class: the mean of its texts' embeddings over the templates, renormalized
        (prompt ensembling, as in CLIP's zero-shot ImageNet evaluation)."""
        texts = [template.format(label=label) for label in label_texts for template in templates]
        embeds = self.embed_texts(texts).view(len(label_texts), len(templates), -1)
        return F.normalize(embeds.mean(dim=1), dim=-1)


class ClipScorer:
    """The ``clip_*`` columns of a batch: zero-shot probabilities over the classes, and CLIPScore vs. its prompt."""

    def __init__(self, clip: Clip, label_texts: Sequence[str], templates: Sequence[str]):
        self.clip = clip
        self.classes = clip.class_embeddings(label_texts, templates)
        self._prompts: dict[str, torch.Tensor] = {}

    def prompt_embeddings(self, prompts: Sequence[str]) -> torch.Tensor:
        """Embeddings of the prompts, each computed once: a build has few distinct prompts and many images."""
        new = list(dict.fromkeys(p for p in prompts if p not in self._prompts))
        if new:
            self._prompts.update(zip(new, self.clip.embed_texts(new)))
        return torch.stack([self._prompts[p] for p in prompts])

    @torch.inference_mode()
    def score(self, images: Images, labels: torch.Tensor, prompts: Sequence[str]) -> dict[str, list]:
        embeds = self.clip.embed_images(images)
        probs = (self.clip.logit_scale * embeds @ self.classes.T).softmax(dim=-1)
        return {
            "clip_probs": probs.tolist(),
            "clip_pred": probs.argmax(dim=-1).tolist(),
            "clip_true_prob": probs.gather(1, labels[:, None])[:, 0].tolist(),
            "clip_score": clip_score(embeds, self.prompt_embeddings(prompts)).tolist(),
        }
