"""The job plan: a pure function from a recipe to every image to make, grouped into batches and shards.

Nothing here touches a GPU or a model. The plan fixes, before any work starts:
- which prompt each image uses (with ``prompt_disjoint``, a prompt's split is a function of the prompt alone:
  ``Recipe.split_prompts``) and its seed, derived from the global seed and the image's identity
  (split, class, prompt, occurrence), so changing one class never moves another class's seeds, and a seed never
  depends on which process makes the image;
- the batches (always within one split and class, so a per-class override stays one pipeline call), so the
  numerics of every image are the same whatever the number of processes;
- the shards (consecutive batches of one split and class), the unit of distribution, resume and export. A
  shard's key hashes everything that decides its content, so a finished shard can be recognised and reused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from builders.recipe import Recipe


@dataclass(frozen=True)
class Job:
    """One image to make, with everything that decides its pixels."""

    id: str
    split: str
    label: int
    class_name: str
    index: int
    prompt: str
    negative_prompt: str
    guidance_scale: float
    seed: int

    def regeneration_seed(self, global_seed: int, attempt: int) -> int:
        """A fresh seed for an image the safety checker flagged, still a pure function of the job."""
        return derive_seed(global_seed, self.split, self.class_name, self.prompt, self.index, "regenerate", attempt)


@dataclass(frozen=True)
class Batch:
    jobs: tuple[Job, ...]

    @property
    def guidance_scale(self) -> float:
        return self.jobs[0].guidance_scale


@dataclass(frozen=True)
class Shard:
    split: str
    class_name: str
    batches: tuple[Batch, ...]
    key: str

    @property
    def jobs(self) -> list[Job]:
        return [job for batch in self.batches for job in batch.jobs]

    @property
    def size(self) -> int:
        return sum(len(batch.jobs) for batch in self.batches)


@dataclass(frozen=True)
class Plan:
    shards: tuple[Shard, ...]

    @property
    def num_images(self) -> int:
        return sum(shard.size for shard in self.shards)

    @property
    def splits(self) -> list[str]:
        return list(dict.fromkeys(shard.split for shard in self.shards))

    def shards_of(self, split: str) -> list[Shard]:
        return [shard for shard in self.shards if shard.split == split]

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per split and class."""
        counts: dict[str, dict[str, int]] = {}
        for shard in self.shards:
            per_class = counts.setdefault(shard.split, {})
            per_class[shard.class_name] = per_class.get(shard.class_name, 0) + shard.size
        return counts


def derive_seed(global_seed: int, *identity: Any) -> int:
    """A 63-bit seed from the global seed and an identity, stable across Python versions and machines."""
    digest = hashlib.sha256(json.dumps([global_seed, *identity], ensure_ascii=False).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def content_fingerprint(recipe: Recipe, device_type: str, dtype_name: str) -> dict[str, Any]:
    """The recipe fields (and resolved runtime choices) that decide the content of every finished shard.

    Per-image fields (prompt, negative prompt, guidance, seed) are not here: they are in each shard's key, so
    changing one class's prompts regenerates only that class's shards. What is here applies to all shards:
    a finished shard made under different values cannot be mixed into the same dataset.
    """
    return {
        "seed": recipe.seed,
        "class_names": recipe.class_names,
        "model.id": recipe.model.id,
        "model.revision": recipe.model.revision,
        "model.pipeline": recipe.model.pipeline,  # the family, and the settings below that change its pixels
        "model.loras": [lora.model_dump(mode="json") for lora in recipe.model.loras],
        "model.max_sequence_length": recipe.model.max_sequence_length,
        "model.vae": [recipe.model.vae_slicing, recipe.model.vae_tiling],
        "model.dtype": dtype_name,
        "model.scheduler": recipe.model.scheduler,
        "model.safety_checker": recipe.model.safety_checker,
        "model.safety_checker_id": recipe.model.safety_checker_id if recipe.model.safety_checker else None,
        "model.on_flagged": recipe.model.on_flagged if recipe.model.safety_checker else None,
        "model.max_regenerations": recipe.model.max_regenerations if recipe.model.safety_checker else None,
        "model.compile": recipe.model.compile,  # these three change pixels within rounding, not more
        "model.channels_last": recipe.model.channels_last,
        "model.attention": recipe.model.attention,
        "device_type": device_type,
        "generation.num_inference_steps": recipe.generation.num_inference_steps,
        "generation.height": recipe.generation.height,
        "generation.width": recipe.generation.width,
        "output.image_format": recipe.output.image_format,
        "output.png_compress_level": recipe.output.png_compress_level,
        "output.quality": recipe.output.quality,
        "scoring": recipe.scoring.model_dump(mode="json"),
        "label_texts": [recipe.label_text(name) for name in recipe.class_names],
        "imagenet_classes": {name: spec.imagenet_classes for name, spec in recipe.classes.items()},
    }


def prompt_of_image(index: int, images_per_prompt: int, prompts: list[str]) -> str:
    """The prompt of a split's ``index``-th image of a class: prompts in turn, ``images_per_prompt`` consecutive
    images each."""
    return prompts[(index // images_per_prompt) % len(prompts)]


def prompts_with_images(recipe: Recipe, split: str, prompts: list[str]) -> list[str]:
    """The prompts (of the split's ``prompts`` of a class) that its images use: the first ones, where there are
    more prompts than the count asks for (``prompt_of_image``)."""
    return prompts[: -(-recipe.splits[split] // recipe.generation.images_per_prompt)]


def jobs_for(recipe: Recipe, split: str, label: int, class_name: str, prompts: list[str]) -> list[Job]:
    """The images of one split and class, each with its prompt (``prompt_of_image``) and derived seed."""
    occurrences: dict[str, int] = {}
    jobs = []
    for index in range(recipe.splits[split]):
        prompt = prompt_of_image(index, recipe.generation.images_per_prompt, prompts)
        occurrence = occurrences.get(prompt, 0)
        occurrences[prompt] = occurrence + 1
        jobs.append(
            Job(
                id=f"{split}/{class_name}/{index:06d}",
                split=split,
                label=label,
                class_name=class_name,
                index=index,
                prompt=prompt,
                negative_prompt=recipe.negative_prompt_of(class_name),
                guidance_scale=recipe.guidance_scale_of(class_name),
                seed=derive_seed(recipe.seed, split, class_name, prompt, occurrence),
            )
        )
    return jobs


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class ShardKeys:
    """Shard keys under one fingerprint. The fingerprint (which grows with the number of classes) is serialized and
    hashed once, not once per shard, so a plan of many classes is linear in its size; the bytes hashed are those of
    ``json.dumps([fingerprint, batches], ensure_ascii=False, sort_keys=True)``, so keys never change."""

    def __init__(self, fingerprint: dict[str, Any]):
        self._prefix = hashlib.sha256(f"[{_dumps(fingerprint)}, ".encode())

    def __call__(self, batches: list[Batch]) -> str:
        jobs = [[[j.id, j.prompt, j.negative_prompt, j.guidance_scale, j.seed] for j in b.jobs] for b in batches]
        digest = self._prefix.copy()
        digest.update(f"{_dumps(jobs)}]".encode())
        return digest.hexdigest()[:24]


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def make_plan(recipe: Recipe, fingerprint: dict[str, Any]) -> Plan:
    """Expand a recipe into its shards, in plan order: split, then class, then image index."""
    batch_size = recipe.generation.batch_size
    batches_per_shard = max(1, recipe.output.shard_size // batch_size)
    shard_key = ShardKeys(fingerprint)
    shards = []
    for label, class_name in enumerate(recipe.class_names):
        prompts_by_split = recipe.split_prompts(class_name)
        for split in recipe.splits:
            jobs = jobs_for(recipe, split, label, class_name, prompts_by_split[split])
            batches = [Batch(tuple(c)) for c in _chunks(jobs, batch_size)]
            for group in _chunks(batches, batches_per_shard):
                shards.append(Shard(split, class_name, tuple(group), shard_key(group)))
    order = {split: i for i, split in enumerate(recipe.splits)}
    return Plan(tuple(sorted(shards, key=lambda s: order[s.split])))
