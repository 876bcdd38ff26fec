"""The ``datasets`` builder whose config is a recipe: ``_info``, ``_split_generators``, ``_generate_examples``.

It is a real ``GeneratorBasedBuilder`` (``download_and_prepare`` works on one process), and it is also the
piece the distributed build calls shard by shard: ``shard_rows`` yields the rows of one planned shard, batch by
batch, with the image still as raw pixels, so the (possibly background) writer encodes and writes them with
datasets' own ``ParquetWriter``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import datasets
import torch
from tqdm.auto import tqdm

from builders.encode import encode_image
from builders.generators import describe, family_of
from builders.generators.base import LoadedGenerator, start_images, to_uint8_hwc
from builders.plan import Job, Plan, Shard, content_fingerprint, make_plan
from builders.provenance import dataset_provenance
from builders.recipe import Recipe
from builders.refilter import regenerate_failing
from builders.rows import BatchRows, GeneratedRow, row_features
from builders.spec import BuildSpec
from builders.timing import StageClock
from eval.preprocess import rgb_tensor
from eval.scorers import Scorers, scorer_features
from synthcore.model_refs import Placement

LOADING = "load models"  # the clock's stage (``builders.timing``) of loading the generator and the scorers


def dataset_features(recipe: Recipe) -> datasets.Features:
    return datasets.Features(
        {**row_features(recipe.class_names, recipe.guided), **scorer_features(recipe.scoring_task(), recipe.scoring)}
    )


@dataclass
class SyntheticImagesConfig(datasets.BuilderConfig):
    """A builder config that is a recipe, plus where the process runs (decides dtype and fingerprint)."""

    recipe: Recipe | None = None
    placement: Placement | None = None


class SyntheticImages(datasets.GeneratorBasedBuilder):
    BUILDER_CONFIG_CLASS = SyntheticImagesConfig

    def __init__(self, *args, **kwargs):
        """``recipe=``: a resolved recipe (``builders.spec``; it is never resolved again here); ``placement=``."""
        super().__init__(*args, **kwargs)
        self._generator: LoadedGenerator | None = None
        self._scorers = None
        self.clock = StageClock(self.placement.device if self.placement else "cpu")

    @classmethod
    def of(cls, spec: BuildSpec, device: torch.device) -> SyntheticImages:
        """The builder of a build spec on this process's ``device``."""
        return cls(recipe=spec.recipe, placement=spec.placement(device), name=spec.recipe.name)

    @property
    def recipe(self) -> Recipe:
        return self.config.recipe

    @property
    def placement(self) -> Placement:
        return self.config.placement

    def fingerprint(self) -> dict:
        return content_fingerprint(self.recipe, self.placement.device.split(":")[0], self.placement.dtype_name)

    def plan(self) -> Plan:
        return make_plan(self.recipe, self.fingerprint())

    def _info(self) -> datasets.DatasetInfo:
        recipe = self.config.recipe
        return datasets.DatasetInfo(
            description=recipe.description
            or f"Synthetic image-classification dataset built from recipe {recipe.name!r}.",
            features=dataset_features(recipe),
        )

    def provenance(self) -> dict:
        """How the dataset was made (``dataset_provenance``), and what the generator's family did with it."""
        return dataset_provenance(self.recipe, self.fingerprint()) | {"generator": describe(self.recipe)}

    def _split_generators(self, dl_manager):
        plan = self.plan()
        return [
            datasets.SplitGenerator(name=split, gen_kwargs={"shards": plan.shards_of(split)}) for split in plan.splits
        ]

    def _generate_examples(self, shards: list[Shard]):
        for shard in shards:
            for batch in self.shard_rows(shard):
                for row in batch.rows:
                    yield row["id"], self.encode(row)

    def encode(self, row: dict) -> dict:
        """A row as stored: the raw pixels replaced by encoded image bytes."""
        return {**row, "image": encode_image(row["image"], self.recipe.output)}

    def models(self):
        """The generator and the scorers, loaded on first use (once per process)."""
        if self._generator is None:
            with (
                self.clock.stage(LOADING),
                tqdm(total=2, desc="loading models", unit="model", leave=False, dynamic_ncols=True) as bar,
            ):
                self._generator = family_of(self.recipe).load(self.recipe, self.placement)
                bar.update()
                self._scorers = Scorers(
                    self.recipe.scoring_task(), self.recipe.scoring, self.placement.device, self.placement.dtype
                )
                bar.update()
        return self._generator, self._scorers

    def shard_rows(self, shard: Shard) -> Iterator[BatchRows]:
        """The rows of one shard, batch by batch, images as uint8 (H, W, 3) arrays. Safety-flagged images that
        could not be regenerated are left out, and named in ``dropped``."""
        generator, scorers = self.models()
        for batch in shard.batches:
            with self.clock.stage("generate", on_device=True):
                made = generator.generate(batch)
            with self.clock.stage("score", on_device=True):
                scores = scorers.score(made.images, [job.label for job in made.jobs], [job.prompt for job in made.jobs])
                tries = regenerate_failing(generator, scorers, made, scores, self.recipe)
            with self.clock.stage("score", on_device=True):
                references = self.reference_columns(made.jobs, made.images, scorers)
            with self.clock.stage("copy to host"):
                pixels = to_uint8_hwc(made.images)
            rows = [
                GeneratedRow(
                    id=job.id,
                    image=pixels[i],
                    label=job.label,
                    prompt=job.prompt,
                    negative_prompt=job.negative_prompt,
                    seed=made.seeds[i],
                    guidance_scale=job.guidance_scale,
                    safety_regenerations=made.safety_regenerations[i],
                    filter_regenerations=tries[i],
                ).as_dict()
                | references[i]
                | {column: values[i] for column, values in scores.items()}
                for i, job in enumerate(made.jobs)
            ]
            yield BatchRows(rows, [job.id for job in made.dropped])

    def reference_columns(self, jobs: list[Job], images: torch.Tensor, scorers: Scorers) -> list[dict]:
        """Each row's reference columns (``REFERENCE_FEATURES``; none for a recipe without references): the file it
        started from, its SHA-256, and CLIP's similarity of the image to the reference as the generator took it."""
        if not self.recipe.guided:
            return [{}] * len(jobs)
        similarity = None
        if jobs and jobs[0].reference is not None:
            starts = [rgb_tensor(image, images.device) for image in start_images(self.recipe, jobs)]
            similarity = scorers.image_similarity(images, starts)
        return [
            {
                "reference_image": job.reference,
                "reference_sha256": job.reference_sha256,
                "reference_similarity": None if similarity is None else similarity[i],
            }
            for i, job in enumerate(jobs)
        ]
