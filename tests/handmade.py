"""Hand-made builds for the fast tier: a recipe's planned shards written with made-up pixels and scores, no model.

Everything downstream of generation (export, filters, summary, pictures, card, push checks) runs on these in
process, in well under a second per build, exactly as it runs on a real build's shards.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from builders.builder import dataset_features
from builders.export import BUILD_OUTPUT, ExportResult, export_dataset
from builders.plan import Job, Plan, content_fingerprint, derive_seed, make_plan
from builders.provenance import dataset_provenance
from builders.recipe import Recipe, parse_recipe
from builders.rows import GeneratedRow
from builders.store.local import OutputDir
from eval.scorers.resnet50 import imagenet_categories
from synthcore.layout import MAX_FILES_PER_FOLDER
from synthcore.outdir import claimed

RECIPE = """
name: handmade
model: {id: tiny-random, safety_checker: false}
generation: {height: 16, width: 16, batch_size: 2, images_per_prompt: 1}
classes:
  fox: {prompts: ["a red fox", "a fox in snow"], imagenet_classes: [red fox]}
  dog: {prompts: ["a dog"]}
  여우: {prompts: ["수채화 여우"]}
splits: {train: 4, test: 2}
output: {shard_size: 2}
scoring: {clip: {model: tiny-random}, resnet50: {weights: tiny-random}}
"""


def true_prob(job: Job) -> float:
    """A made-up CLIP probability of the true class, spread over [0.05, 0.95] by the image's identity."""
    return 0.05 + 0.9 * (derive_seed(0, job.id) % 1000) / 999


EMBEDDING_WIDTH = 16


def fake_embedding(job: Job) -> np.ndarray:
    """A made-up unit CLIP embedding, random by the image's identity (so no two rows are near-duplicates)."""
    vector = np.random.default_rng(job.seed ^ 1).standard_normal(EMBEDDING_WIDTH)
    return vector / np.linalg.norm(vector)


def fake_row(recipe: Recipe, job: Job) -> dict:
    classes = len(recipe.class_names)
    p = true_prob(job)
    probs = [p if k == job.label else (1 - p) / (classes - 1) for k in range(classes)]
    top5 = list(range(5)) if job.label else [imagenet_categories().index("red fox"), 1, 2, 3, 4]
    pixels = np.random.default_rng(job.seed).integers(0, 256, (recipe.generation.height, recipe.generation.width, 3))
    row = GeneratedRow(
        job.id,
        pixels.astype(np.uint8),
        job.label,
        job.prompt,
        job.negative_prompt,
        job.seed,
        job.guidance_scale,
        None,
        None,
    )
    return row.as_dict() | {
        "clip_probs": probs,
        "clip_pred": int(np.argmax(probs)),
        "clip_true_prob": p,
        "clip_score": 100 * p,
        "clip_embedding": fake_embedding(job).tolist(),
        "resnet50_top5_ids": top5,
        "resnet50_top5_labels": [imagenet_categories()[i] for i in top5],
        "resnet50_top5_probs": [0.5, 0.2, 0.1, 0.1, 0.05],
        "resnet50_match": (job.label == 0 and job.index % 2 == 0) if job.label == 0 else None,
    }


def write_shards(recipe: Recipe, root: Path, make_row=fake_row) -> tuple[OutputDir, Plan, dict]:
    """Every planned shard of ``recipe`` under ``root``, as a build would leave them before export
    (``make_row(recipe, job)``: a row with its image as a uint8 array)."""
    from builders.encode import encode_image

    fingerprint = content_fingerprint(recipe, "cpu", "float32")
    plan = make_plan(recipe, fingerprint)
    features = dataset_features(recipe)
    with claimed(root, BUILD_OUTPUT) as owned:  # as a build claims its output directory
        store = OutputDir(owned.root)
        store.prepare(fingerprint, overwrite=False)
        for shard in plan.shards:
            writer = store.open_shard(shard, features)
            writer.write(
                [
                    row | {"image": encode_image(row["image"], recipe.output)}
                    for row in (make_row(recipe, job) for job in shard.jobs)
                ]
            )
            writer.commit()
    return store, plan, dataset_provenance(recipe, fingerprint)


def export(
    recipe: Recipe, store: OutputDir, plan: Plan, provenance: dict, max_files: int = MAX_FILES_PER_FOLDER
) -> ExportResult:
    """``export_dataset`` on the shards of ``write_shards``, under the claim a build holds while it exports
    (``max_files``: files of ``data/`` above which it is chunked)."""
    with claimed(store.root, BUILD_OUTPUT) as owned:
        return export_dataset(recipe, dataset_features(recipe), provenance, store, owned, plan, max_files)


def handmade_recipe(extra: str = "") -> Recipe:
    return parse_recipe(RECIPE + extra, "handmade.yaml")
