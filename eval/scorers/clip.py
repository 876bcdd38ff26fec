"""CLIP: zero-shot class probabilities and CLIPScore, computed on device tensors.

``Clip`` wraps a transformers ``CLIPModel`` and its ``CLIPProcessor`` (a Hub id, a local directory, or
``tiny-random``): images go through the processor's own resize/crop/normalize values, in torch on the images'
device; texts go through the processor's tokenizer, truncated to the model's context (77 tokens) with a warning.
``ClipScorer`` is the plug-in that turns it into the dataset's ``clip_*`` columns.
"""

from __future__ import annotations

import logging
import string
from collections.abc import Callable, Sequence

import datasets
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator

from eval.preprocess import Images, Preprocess, stored_uint8
from eval.scorers.base import CliOption, FilterRule, LoadedScorer, Scorer, ScorerSettings, ScoringTask, SummaryStat
from synthcore.availability import ModelNeed, transformers_model
from synthcore.cardmeta import md, model_link
from synthcore.model_refs import check_model_ref, hub_commit, resolve

log = logging.getLogger("synthdata.eval")

DEFAULT_CLIP = "openai/clip-vit-base-patch32"
TRUE_PROB = "clip_true_prob"
EMBEDDING = "clip_embedding"
PROMPT_CACHE = 65_536
IMAGE_CHUNK = 16  # images per CLIP forward pass, always (see Clip)
TEXT_CHUNK = 256  # texts per CLIP forward pass, always: 10^5 classes embed in bounded memory


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
    """A CLIP model and its processor on one device, giving unit-norm image and text embeddings (float32).

    Images go through the processor itself (its torchvision backend, on the images' device): uint8 pixels resized
    as CLIPProcessor resizes them, so the embeddings are the processor's. The model then runs on chunks of exactly
    ``IMAGE_CHUNK`` images (``TEXT_CHUNK`` texts padded to the model's context), the last chunk padded by repeating
    its last row: every forward pass has the same shapes, so a row's numbers do not depend on which other rows
    share its batch (a 1-process and a 2-process build give equal scores) and many texts never form one batch.
    """

    def __init__(self, ref: str, device: str | torch.device, dtype: torch.dtype = torch.float32):
        from transformers import CLIPModel, CLIPProcessor

        path = resolve(ref, "clip")
        self.ref = ref
        self.device = torch.device(device)
        self.dtype = dtype
        self.processor = CLIPProcessor.from_pretrained(path)
        self.model = CLIPModel.from_pretrained(path, dtype=dtype).to(self.device).eval()
        self.max_tokens = min(
            self.processor.tokenizer.model_max_length, self.model.config.text_config.max_position_embeddings
        )

    @property
    def logit_scale(self) -> torch.Tensor:
        """The temperature CLIP was trained with (exp of the learned log scale): zero-shot logits use it."""
        return self.model.logit_scale.exp().float()

    def pixel_values(self, images: Images) -> torch.Tensor:
        """The processor's ``pixel_values`` for float [0, 1] or uint8 images, rounded to 8 bits as stored."""
        batch = [stored_uint8(image) for image in images]
        return self.processor.image_processor(images=batch, return_tensors="pt", device=self.device)["pixel_values"]

    @torch.inference_mode()
    def embed_pixels(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Unit image embeddings of one chunk of processed pixels."""
        features = self.model.get_image_features(pixel_values=pixel_values.to(self.dtype)).pooler_output
        return F.normalize(features.float(), dim=-1)

    def embed_images(self, images: Images) -> torch.Tensor:
        return in_chunks(self.embed_pixels, IMAGE_CHUNK, self.pixel_values(images))[0]

    @torch.inference_mode()
    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        self._warn_if_truncated(texts)
        tokens = self.processor.tokenizer(
            list(texts), padding="max_length", truncation=True, max_length=self.max_tokens, return_tensors="pt"
        ).to(self.device)
        return in_chunks(self._embed_tokens, TEXT_CHUNK, tokens["input_ids"], tokens["attention_mask"])[0]

    def _embed_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        features = self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output
        return F.normalize(features.float(), dim=-1)

    def _warn_if_truncated(self, texts: Sequence[str]) -> None:
        lengths = [len(ids) for ids in self.processor.tokenizer(list(texts), verbose=False)["input_ids"]]
        for text, length in zip(texts, lengths):
            if length > self.max_tokens:
                log.warning(
                    "CLIP text truncated from %d to %d tokens (the model's context); it is scored as cut: %r",
                    length,
                    self.max_tokens,
                    text,
                )

    def class_embeddings(self, label_texts: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
        """One unit embedding per class: the mean of its texts' embeddings over the templates, renormalized
        (prompt ensembling, as in CLIP's zero-shot ImageNet evaluation)."""
        texts = [template.format(label=label) for label in label_texts for template in templates]
        embeds = self.embed_texts(texts).view(len(label_texts), len(templates), -1)
        return F.normalize(embeds.mean(dim=1), dim=-1)


def in_chunks(compute: Callable[..., torch.Tensor | tuple], size: int, *rows: torch.Tensor) -> list[torch.Tensor]:
    """``compute`` over the rows in chunks of exactly ``size`` (the last padded by repeating its last row),
    its outputs concatenated without the padding.

    Fixed shapes make each row's result independent of its neighbours: matrix products and reductions pick their
    kernels by shape, so a row scored alone and in a full batch gets the same bits.
    """
    outputs = []
    for start in range(0, len(rows[0]), size):
        chunk = [part[start : start + size] for part in rows]
        real = len(chunk[0])
        padded = [torch.cat([part, part[-1:].expand(size - real, *part.shape[1:])]) for part in chunk]
        out = compute(*padded)
        outputs.append([o[:real] for o in (out if isinstance(out, tuple) else (out,))])
    return [torch.cat(parts) for parts in zip(*outputs)]


class ClipSettings(ScorerSettings):
    model: str = Field(
        default=DEFAULT_CLIP,
        min_length=1,
        description="Hub id or local directory of a CLIP model (`tiny-random` for tests)",
    )
    label_templates: list[str] = Field(
        default=["a photo of a {label}"],
        description="texts per class, each with a `{label}` field (the class's label text); several are averaged "
        "(prompt ensembling)",
    )
    embeddings: bool = Field(
        default=True,
        description="store each image's unit CLIP embedding (`clip_embedding`), used for duplicates, diversity "
        "and CMMD",
    )

    @field_validator("model")
    @classmethod
    def _existing_local_path(cls, value: str) -> str:
        return check_model_ref(value)

    @field_validator("label_templates")
    @classmethod
    def _has_label_field(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("needs at least one template")
        for template in value:
            try:
                fields = [
                    (field, spec, conv)
                    for _, field, spec, conv in string.Formatter().parse(template)
                    if field is not None
                ]
            except ValueError as err:
                raise ValueError(f"malformed template {template!r}: {err}") from None
            if {field for field, _, _ in fields} != {"label"} or any(spec or conv for _, spec, conv in fields):
                raise ValueError(f"template {template!r} must use exactly the plain field {{label}} (no format spec)")
        return value


class ClipScorer(Scorer):
    """CLIP zero-shot probabilities over the classes, and CLIPScore of each image against its prompt."""

    name = "clip"
    Settings = ClipSettings
    filters = (
        FilterRule(
            "min_true_class_prob",
            TRUE_PROB,
            "min",
            0,
            1,
            "keep rows whose CLIP probability of the true class is at least this (0 to 1)",
        ),
        FilterRule(
            "min_clip_score",
            "clip_score",
            "min",
            0,
            100,
            "keep rows whose CLIP score against their prompt is at least this (0 to 100)",
        ),
    )
    summary = (
        SummaryStat("clip_true_prob_mean", "P(true) mean", TRUE_PROB, "mean", ".3f"),
        SummaryStat("clip_true_prob_median", "P(true) median", TRUE_PROB, "median", ".3f"),
        SummaryStat("clip_score_mean", "CLIPScore", "clip_score", "mean", ".2f"),
    )
    cli_options = (
        CliOption("--clip-model", "model", f"CLIP Hub id, local directory, or tiny-random (default: {DEFAULT_CLIP})"),
        CliOption(
            "--label-template",
            "label_templates",
            "text per class, with {label}; repeat to ensemble (default: 'a photo of a {label}')",
            repeat=True,
        ),
    )

    def features(self, task: ScoringTask, settings: ClipSettings) -> dict:
        columns = {
            "clip_probs": datasets.Sequence(datasets.Value("float32")),
            "clip_pred": datasets.ClassLabel(names=list(task.class_names)),
            TRUE_PROB: datasets.Value("float32"),
            "clip_score": datasets.Value("float32"),
        }
        return columns | ({EMBEDDING: datasets.Sequence(datasets.Value("float32"))} if settings.embeddings else {})

    def load(self, settings: ClipSettings, task: ScoringTask, device: torch.device, dtype: torch.dtype) -> LoadedClip:
        clip = Clip(settings.model, device, dtype)
        return LoadedClip(clip, task.label_texts, settings.label_templates, settings.embeddings)

    def describe(self, settings: ClipSettings) -> tuple[str, str]:
        templates = ", ".join(f"“{md(t)}”" for t in settings.label_templates)
        return "CLIP (zero-shot class probabilities)", f"{model_link(settings.model)}; class texts from {templates}"

    def provenance(self, settings: ClipSettings) -> dict:
        return {"id": settings.model, "commit": hub_commit(settings.model, None, "config.json")}

    def model_refs(self, settings: ClipSettings) -> list[ModelNeed]:
        return [transformers_model("scoring.clip.model", settings.model, "CLIP model")]


class LoadedClip(LoadedScorer):
    """The ``clip_*`` columns of a batch: zero-shot probabilities over the classes, and CLIPScore vs. its prompt."""

    def __init__(self, clip: Clip, label_texts: Sequence[str], templates: Sequence[str], embeddings: bool = True):
        self.clip = clip
        self.embeddings = embeddings
        self.classes = clip.class_embeddings(label_texts, templates)
        self.class_texts = [templates[0].format(label=text) for text in label_texts]
        self._prompts: dict[str, torch.Tensor] = {}

    def prompt_embeddings(self, prompts: Sequence[str]) -> torch.Tensor:
        """Embeddings of the prompts, each computed once: a build has few distinct prompts and many images. The
        cache is bounded (emptied past ``PROMPT_CACHE`` prompts) for builds of millions of sampled prompts."""
        if len(self._prompts) > PROMPT_CACHE:
            self._prompts.clear()
        new = list(dict.fromkeys(p for p in prompts if p not in self._prompts))
        if new:
            self._prompts.update(zip(new, self.clip.embed_texts(new)))
        return torch.stack([self._prompts[p] for p in prompts])

    @torch.inference_mode()
    def score(self, images: Images, labels: torch.Tensor, prompts: Sequence[str | None]) -> dict[str, list]:
        """A row without a prompt (a real dataset) is compared with its class's text in the first label template.
        The image embedding itself (unit norm, float32) is a column too, unless switched off: it is what the
        duplicate, diversity and CMMD measures of ``eval.quality`` read, so they never load CLIP again."""
        prompts = [p if p is not None else self.class_texts[label] for p, label in zip(prompts, labels.tolist())]
        pixels = self.clip.pixel_values(images)
        embeds, probs, scores = in_chunks(self._score_chunk, IMAGE_CHUNK, pixels, self.prompt_embeddings(prompts))
        columns = {
            "clip_probs": probs.tolist(),
            "clip_pred": probs.argmax(dim=-1).tolist(),
            TRUE_PROB: probs.gather(1, labels[:, None].to(probs.device))[:, 0].tolist(),
            "clip_score": scores.tolist(),
        }
        return columns | ({EMBEDDING: embeds.tolist()} if self.embeddings else {})

    def _score_chunk(self, pixel_values: torch.Tensor, prompt_embeds: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Embeddings, class probabilities and CLIPScores of one fixed-size chunk."""
        embeds = self.clip.embed_pixels(pixel_values)
        probs = (self.clip.logit_scale * embeds @ self.classes.T).softmax(dim=-1)
        return embeds, probs, clip_score(embeds, prompt_embeds)
