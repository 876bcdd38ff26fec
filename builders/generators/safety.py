"""Stable Diffusion's safety checker, run on the device tensors of any family.

SD 1.x pipelines ship the checker; it is taken out of the pipeline and run here, because diffusers would turn every
batch into PIL images on the CPU for its feature extractor, which makes the GPU wait. Families that ship none (SD 2.x,
SDXL, SD3, FLUX.1, PixArt, Sana) get the same checker loaded on its own (``model.safety_checker_id``, by default
``CompVis/stable-diffusion-safety-checker``, whose repo holds the checker and its image processor). Its input gets
the image processor's own resize, crop and normalization, done in torch.
"""

from __future__ import annotations

import torch

from eval.scorers.clip import processor_preprocess
from synthcore.model_refs import TINY_RANDOM, Placement, resolve
from synthcore.tiny import tiny_safety_checker_dir


class SafetyChecker:
    """A ``StableDiffusionSafetyChecker`` and its preprocessing, on one device."""

    def __init__(self, checker, image_processor, placement: Placement):
        self.checker = checker
        self.preprocess = processor_preprocess(image_processor)
        self.dtype = placement.dtype

    @classmethod
    def of_pipeline(cls, pipe, placement: Placement) -> SafetyChecker | None:
        """The pipeline's own checker, taken out of it (None when it ships none)."""
        checker = getattr(pipe, "safety_checker", None)
        if checker is None:
            return None
        pipe.safety_checker = None
        return cls(checker, pipe.feature_extractor, placement)

    @classmethod
    def standalone(cls, ref: str, placement: Placement) -> SafetyChecker:
        """The checker of ``ref`` (a Hub id or a directory with the checker and its image processor)."""
        from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
        from transformers import CLIPImageProcessor

        path = str(tiny_safety_checker_dir()) if ref == TINY_RANDOM else resolve(ref, "")
        checker = StableDiffusionSafetyChecker.from_pretrained(path, dtype=placement.dtype).to(placement.device)
        return cls(checker.eval(), CLIPImageProcessor.from_pretrained(path), placement)

    def flagged(self, images: torch.Tensor) -> list[bool]:
        """The checker's verdict per image (it also blacks flagged images out, as in diffusers)."""
        clip_input = self.preprocess(images, self.dtype)
        _, flagged = self.checker(images=images, clip_input=clip_input)
        return [bool(f) for f in flagged]
