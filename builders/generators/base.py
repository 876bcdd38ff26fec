"""What a generator plug-in is: it loads a text-to-image pipeline on a device with the recipe's settings and turns
a planned batch into image tensors on that device, each image from its own planned seed.

A generator is one module under ``builders/generators/`` defining a ``Generator`` subclass, and one line in the
registry (``builders/generators/__init__.py``). The safety-checker policy (regenerate flagged images with derived
seeds, or drop them) is the same for every family and lives here, in ``LoadedGenerator.generate``.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch

from builders.plan import Batch, Job
from builders.recipe import Recipe
from synthcore.model_refs import Placement

log = logging.getLogger("synthdata.generate")


@dataclass
class GeneratedBatch:
    """The kept images of one batch, float (B, 3, H, W) in [0, 1] on the device, with the jobs they belong to
    and what the safety checker did."""

    jobs: list[Job]
    images: torch.Tensor
    seeds: list[int]
    safety_regenerations: list[int | None]
    dropped: list[Job]


class Generator(ABC):
    """A generator plug-in (stateless: one instance in the registry)."""

    name: ClassVar[str]
    pipeline_classes: ClassVar[tuple[str, ...]]  # the diffusers pipeline classes (model_index.json) it runs

    def problems(self, recipe: Recipe) -> list[str]:
        """Recipe settings this family does not support, as recipe problems with their key paths."""
        return []

    @abstractmethod
    def load(self, recipe: Recipe, placement: Placement) -> LoadedGenerator:
        """The pipeline on ``placement``'s device and dtype, with the recipe's speed settings applied."""


class LoadedGenerator(ABC):
    """A loaded pipeline: ``images`` makes pixels, ``flagged`` judges them; ``generate`` applies the policy."""

    def __init__(self, recipe: Recipe):
        self.recipe = recipe

    @abstractmethod
    def images(self, jobs: list[Job], seeds: list[int], guidance_scale: float) -> torch.Tensor:
        """Float (B, 3, H, W) in [0, 1] on the device; image i's initial noise from a CPU generator seeded with
        ``seeds[i]``, so it is the same whichever process, GPU or batch position makes it."""

    def flagged(self, images: torch.Tensor) -> list[bool]:
        """The safety checker's verdict per image (none flagged when the family or the recipe has no checker)."""
        return [False] * len(images)

    @torch.inference_mode()
    def generate(self, batch: Batch) -> GeneratedBatch:
        jobs = list(batch.jobs)
        seeds = [job.seed for job in jobs]
        images = self.images(jobs, seeds, batch.guidance_scale)
        flagged = self.flagged(images)
        settings = self.recipe.model
        regenerations: list[int | None] = [0 if settings.safety_checker else None] * len(jobs)
        if settings.on_flagged == "regenerate":
            for attempt in range(1, settings.max_regenerations + 1):
                redo = [i for i, f in enumerate(flagged) if f]
                if not redo:
                    break
                new_seeds = [jobs[i].regeneration_seed(self.recipe.seed, attempt) for i in redo]
                new_images = self.images([jobs[i] for i in redo], new_seeds, batch.guidance_scale)
                new_flagged = self.flagged(new_images)
                for k, i in enumerate(redo):
                    images[i], flagged[i], seeds[i], regenerations[i] = (
                        new_images[k],
                        new_flagged[k],
                        new_seeds[k],
                        attempt,
                    )
        keep = [i for i, f in enumerate(flagged) if not f]
        dropped = [jobs[i] for i, f in enumerate(flagged) if f]
        if dropped:
            log.warning(
                "safety checker flagged %d image(s) for good; dropped: %s", len(dropped), [j.id for j in dropped]
            )
        return GeneratedBatch(
            jobs=[jobs[i] for i in keep],
            images=images[keep],
            seeds=[seeds[i] for i in keep],
            safety_regenerations=[regenerations[i] for i in keep],
            dropped=dropped,
        )


def to_uint8_hwc(images: torch.Tensor):
    """Float (B, 3, H, W) in [0, 1] on any device to a uint8 (B, H, W, 3) numpy array, as diffusers rounds."""
    return (images.float() * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
