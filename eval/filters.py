"""Quality filters: which rows of a table of scored rows pass the recipe's thresholds.

Computed with pyarrow on the score columns only, so a shard's images are never decoded to decide. A row whose
class has no ImageNet mapping has a null ``resnet50_match``; it passes ``require_imagenet_match`` (there is
nothing to disagree with).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from builders.recipe import FilterSettings


def filter_columns(filters: FilterSettings) -> list[str]:
    """The score columns the active filters read."""
    used = {
        "clip_true_prob": filters.min_true_class_prob is not None,
        "clip_score": filters.min_clip_score is not None,
        "resnet50_match": filters.require_imagenet_match,
    }
    return [column for column, active in used.items() if active]


def keep_mask(table: pa.Table, filters: FilterSettings) -> pa.ChunkedArray:
    """True for the rows that pass every active filter (all rows when none is active); a null score fails."""
    keep = pa.chunked_array([pa.repeat(True, table.num_rows)])
    if filters.min_true_class_prob is not None:
        keep = pc.and_(keep, pc.greater_equal(table["clip_true_prob"], filters.min_true_class_prob))
    if filters.min_clip_score is not None:
        keep = pc.and_(keep, pc.greater_equal(table["clip_score"], filters.min_clip_score))
    if filters.require_imagenet_match:
        keep = pc.and_(keep, pc.fill_null(table["resnet50_match"], True))
    return pc.fill_null(keep, False)


def thresholds(filters: FilterSettings) -> dict:
    """The active filters as plain values, for the summary and the card."""
    return {key: value for key, value in filters.model_dump().items() if key != "dropped" and value is not None and value is not False}
