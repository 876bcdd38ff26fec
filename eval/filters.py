"""Quality filters: which rows of a table of scored rows pass the recipe's thresholds.

The recipe's ``filters`` section has one key per ``FilterRule`` of the registered scorers (``min_*`` thresholds
and ``require_*`` switches) plus ``dropped``, where the rows that fail go. Masks are computed with pyarrow on the
score columns only, so a shard's images are never decoded to decide. A row whose ``require_*`` column is null
(nothing to compare, e.g. a class without ImageNet names) passes. ``drop_duplicates`` (``exact`` or ``near``)
drops rows repeating an earlier kept row; ``eval.quality`` finds them and hands ``keep_mask`` their ids.
``on_fail: regenerate`` makes a row failing a score threshold again during the build (``builders.refilter``).
"""

from __future__ import annotations

from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, create_model

from eval.scorers import SCORERS
from eval.scorers.base import FilterRule
from synthcore.columns import ID

RULES: dict[str, tuple[str, FilterRule]] = {
    rule.key: (name, rule) for name, scorer in SCORERS.items() for rule in scorer.filters
}


class _FilterBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    def rules(self) -> list[tuple[str, FilterRule, float | bool]]:
        """The active rules: (scorer name, rule, its value from the recipe)."""
        active = []
        for key, (scorer, rule) in RULES.items():
            value = getattr(self, key)
            if value is not None and value is not False:
                active.append((scorer, rule, value))
        return active

    @property
    def active(self) -> bool:
        return bool(self.rules()) or self.drop_duplicates != "none"

    def thresholds(self) -> dict:
        """The active filters as plain values, for the summary and the card."""
        dedup = {"drop_duplicates": self.drop_duplicates} if self.drop_duplicates != "none" else {}
        return {rule.key: value for _, rule, value in self.rules()} | dedup

    @property
    def regenerating(self) -> bool:
        """Whether the build makes failing rows again (``on_fail: regenerate`` with a score threshold)."""
        return self.on_fail == "regenerate" and bool(self.rules())

    def regeneration(self) -> dict | None:
        """What decides regenerated rows (the thresholds and the tries), for the content fingerprint; None when
        the build regenerates nothing."""
        if not self.regenerating:
            return None
        thresholds = {rule.key: value for _, rule, value in self.rules()}
        return {"thresholds": thresholds, "max_regenerations": self.max_regenerations}

    def columns(self) -> list[str]:
        """The columns the active filters read (the row id when duplicates are dropped)."""
        dedup = [ID] if self.drop_duplicates != "none" else []
        return list(dict.fromkeys([rule.column for _, rule, _ in self.rules()] + dedup))


def _field(rule: FilterRule):
    if rule.kind == "min":
        return (
            float | None,
            Field(default=None, ge=rule.low, le=rule.high, allow_inf_nan=False, description=rule.description),
        )
    return (bool, Field(default=False, description=rule.description))


FilterSettings = create_model(
    "FilterSettings",
    __base__=_FilterBase,
    __doc__="Thresholds a row must pass to stay in its split; the others are kept aside, never deleted.",
    **{key: _field(rule) for key, (_, rule) in RULES.items()},
    drop_duplicates=(
        Literal["none", "exact", "near"],
        Field(
            default="none",
            description="`exact` or `near`: drop later duplicates within a class, in plan order (the first stays)",
        ),
    ),
    on_fail=(
        Literal["drop", "regenerate"],
        Field(
            default="drop",
            description="a row failing a score threshold is `drop`ped at export, or `regenerate`d during the build "
            "from a new derived seed (up to `max_regenerations` times, then dropped); duplicates are always dropped",
        ),
    ),
    max_regenerations=(
        int,
        Field(
            default=3,
            ge=1,
            le=100,
            description="with `on_fail: regenerate`, the most times a failing row is made again before it is dropped",
        ),
    ),
    dropped=(
        Literal["dataset", "split"],
        Field(
            default="dataset",
            description="where filtered-out rows go: a `dataset` beside the data (`<out>/dropped/`) or `split`s named "
            "`<split>_dropped`",
        ),
    ),
)


def keep_mask(table: pa.Table, filters: _FilterBase, duplicates: pa.Array | None = None) -> pa.ChunkedArray:
    """True for the rows that pass every active filter (all rows when none is active); ``duplicates``: ids of
    the rows ``drop_duplicates`` drops (``eval.quality.QualityReport.drop_array``)."""
    keep = pa.chunked_array([pa.repeat(True, table.num_rows)])
    if duplicates is not None and len(duplicates):
        keep = pc.invert(pc.is_in(table[ID], value_set=duplicates))
    for _, rule, value in filters.rules():
        if rule.kind == "min":
            keep = pc.and_(keep, pc.greater_equal(table[rule.column], value))
        else:
            keep = pc.and_(keep, pc.fill_null(table[rule.column], True))
    return pc.fill_null(keep, False)
