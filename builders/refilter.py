"""``filters.on_fail: regenerate``: a row failing a score threshold is made again during the build.

A failing image is generated again from a new seed derived from its job (``Job.regeneration_seed`` with reason
``refilter`` and the attempt number, as safety-flagged images are), scored, and kept once it passes; after
``filters.max_regenerations`` attempts its last image stays in the shard and the export drops it, as with ``drop``.
Each row records its attempts (``filter_regenerations``). Rows that pass at once are untouched, and since a row's
images, seeds and scores are pure functions of its job (scores do not depend on the batch, ``eval.scorers.clip``),
the shards are the same whichever process or batch makes them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from builders.plan import Batch
from eval.filters import keep_mask
from synthcore.cardmeta import md

ATTEMPTS = "filter_regenerations"


def failing(scores: dict[str, list], filters, positions: list[int]) -> list[int]:
    """The positions (among ``positions``) whose score columns fail an active score threshold."""
    columns = {rule.column for _, rule, _ in filters.rules()}
    table = pa.table({column: [scores[column][i] for i in positions] for column in columns})
    passed = keep_mask(table, filters).to_pylist()
    return [i for i, ok in zip(positions, passed) if not ok]


@torch.inference_mode()  # the batch's images are inference tensors: replaced in place
def regenerate_failing(generator, scorers, made, scores: dict[str, list], recipe) -> list[int | None]:
    """Make the batch's failing rows again (in place in ``made`` and ``scores``), at most
    ``filters.max_regenerations`` times each; each row's attempts (None when the recipe does not regenerate).
    A regenerated image the safety checker drops for good leaves the row's previous image in place."""
    filters = recipe.filters
    if not filters.regenerating:
        return [None] * len(made.jobs)
    attempts = [0] * len(made.jobs)
    redo = failing(scores, filters, list(range(len(made.jobs))))
    for attempt in range(1, filters.max_regenerations + 1):
        if not redo:
            break
        jobs = [
            replace(made.jobs[i], seed=made.jobs[i].regeneration_seed(recipe.seed, attempt, "refilter")) for i in redo
        ]
        again = generator.generate(Batch(tuple(jobs)))
        new_scores = scorers.score(again.images, [job.label for job in again.jobs], [job.prompt for job in again.jobs])
        where = {job.id: i for i, job in zip(redo, jobs)}
        for k, job in enumerate(again.jobs):
            i = where[job.id]
            made.images[i], made.seeds[i] = again.images[k], again.seeds[k]
            made.safety_regenerations[i] = again.safety_regenerations[k]
            for column, values in new_scores.items():
                scores[column][i] = values[k]
        for i in redo:
            attempts[i] = attempt
        redo = failing(scores, filters, redo)
    return attempts


def attempts_by_class(shards: list[tuple[str, Path]]) -> dict[str, dict[str, int]]:
    """Per class, how many rows took how many regenerations (``"0"``: passed at once), from the shards'
    ``filter_regenerations`` column; ``shards`` are (class name, Parquet path). A measure of how hard each class's
    prompts are for the model."""
    counts: dict[str, Counter] = {}
    for class_name, path in shards:
        column = pq.read_table(path, columns=[ATTEMPTS])[ATTEMPTS].to_pylist()
        counts.setdefault(class_name, Counter()).update(str(n) for n in column if n is not None)
    return {name: {tries: c[tries] for tries in sorted(c, key=int)} for name, c in counts.items()}


def attempts_text(by_class: dict[str, dict[str, int]]) -> str:
    """The card's words for ``attempts_by_class``: "fox: 5 at once, 2 after 1, 1 after 3"."""
    return "; ".join(
        f"{md(name)}: "
        + ", ".join(f"{rows} at once" if tries == "0" else f"{rows} after {tries}" for tries, rows in counts.items())
        for name, counts in by_class.items()
    )
