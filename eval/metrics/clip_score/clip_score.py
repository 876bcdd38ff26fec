"""CLIPScore as an ``evaluate`` metric: 100 * cosine similarity of CLIP image and text embeddings, clamped at 0.

Load it by path, offline: ``evaluate.load("eval/metrics/clip_score", model="openai/clip-vit-base-patch32")``
(or ``evaluate.load(eval.metrics.CLIP_SCORE)`` from an installed package). It uses the same CLIP code as the
build's ``clip_score`` column (``eval.scorers.clip``), so scoring a built dataset's images against its prompts gives
that column back.
"""

import datasets
import evaluate
import numpy as np
import torch

from eval.preprocess import rgb_tensor
from eval.scorers.clip import Clip, clip_score
from synthcore.model_refs import choose_dtype

_DESCRIPTION = """CLIPScore (Hessel et al., 2021): how well each image matches its text, as 100 * the cosine
similarity of their CLIP embeddings, clamped at 0. Returns the mean over all pairs and every pair's score."""

_CITATION = """@inproceedings{hessel2021clipscore,
  title={CLIPScore: A Reference-free Evaluation Metric for Image Captioning},
  author={Hessel, Jack and Holtzman, Ari and Forbes, Maxwell and Le Bras, Ronan and Choi, Yejin},
  booktitle={EMNLP},
  year={2021}
}"""

_INPUTS = """
Args:
    images: images (PIL images, or anything datasets.Image encodes), any size or mode.
    texts: one text per image; longer than CLIP's context (77 tokens) is truncated with a warning.
Init args (evaluate.load(path, model=..., device=..., batch_size=...)):
    model: CLIP Hub id, local directory, or "tiny-random" (default "openai/clip-vit-base-patch32").
    device: torch device (default: cuda when available, else cpu); float16 on cuda, float32 on cpu.
    batch_size: pairs per forward pass (default 32).
Returns:
    clip_score: the mean CLIPScore; clip_scores: the score of every pair, in order.
Example:
    >>> clip = evaluate.load("eval/metrics/clip_score", model="tiny-random")
    >>> clip.compute(images=[image], texts=["a watercolor painting of a red fox"])["clip_score"]
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _INPUTS)
class ClipScore(evaluate.Metric):
    def __init__(
        self, model: str = "openai/clip-vit-base-patch32", device: str | None = None, batch_size: int = 32, **kwargs
    ):
        super().__init__(**kwargs)
        self.model_ref = model
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.batch_size = batch_size
        self._clip = None

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=datasets.Features({"images": datasets.Image(), "texts": datasets.Value("string")}),
            reference_urls=["https://arxiv.org/abs/2104.08718"],
        )

    def _model(self) -> Clip:
        if self._clip is None:  # once per metric object, however many compute() calls
            self._clip = Clip(self.model_ref, self.device, getattr(torch, choose_dtype("auto", self.device.type)))
        return self._clip

    def _compute(self, images, texts):
        clip = self._model()
        scores = []
        for start in range(0, len(images), self.batch_size):
            pixels = [rgb_tensor(image, self.device) for image in images[start : start + self.batch_size]]
            scores += clip_score(
                clip.embed_images(pixels), clip.embed_texts(texts[start : start + self.batch_size])
            ).tolist()
        return {"clip_score": float(np.mean(scores)) if scores else float("nan"), "clip_scores": scores}
