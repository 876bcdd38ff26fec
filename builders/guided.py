"""What a build with reference images reports about them (``docs/guidance.md``): per class, the reference set (its
count and hashes; the photos themselves are never published), the strength, and how close the images stayed to
their references (``reference_similarity``), with a warning when many are near-copies. Written into
``build_info.json`` (``reference_images``), logged, and shown on the card."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pyarrow.parquet as pq

from builders.recipe import Recipe
from eval.quality import QualityError, photos_in_reference
from synthcore.cardmeta import md

log = logging.getLogger("synthdata.build")

SIMILARITY = "reference_similarity"
# A class whose share of near-copies reaches this is warned about: a few near-copies are chance, a quarter is the
# strength.
NEAR_COPY_SHARE = 0.25


def set_sha256(hashes: dict[str, str]) -> str:
    """One hash of a whole reference set: SHA-256 of its ``name sha256`` lines, sorted by name."""
    return hashlib.sha256("".join(f"{name} {hashes[name]}\n" for name in sorted(hashes)).encode()).hexdigest()


def reference_report(recipe: Recipe, shards: list[tuple[str, Path]]) -> dict[str, dict]:
    """Per guided class: its reference count, the set's hash, the strength, and over its rows (``shards``: class
    name and Parquet path) the mean ``reference_similarity`` and how many rows reach the near-copy threshold
    (``quality.near_duplicate_threshold``, the cosine at which two generated images count as near-duplicates)."""
    similarities: dict[str, list[float]] = {}
    for class_name, path in shards:
        if recipe.classes[class_name].reference_images is not None:
            column = pq.read_table(path, columns=[SIMILARITY])[SIMILARITY].to_pylist()
            similarities.setdefault(class_name, []).extend(value for value in column if value is not None)
    threshold = recipe.quality.near_duplicate_threshold
    leaked = quality_reference_leaks(recipe)
    report = {}
    for name, spec in recipe.classes.items():
        if spec.reference_images is None:
            continue
        values = similarities.get(name, [])
        report[name] = {
            "references": len(spec.reference_sha256 or {}),
            "set_sha256": set_sha256(spec.reference_sha256 or {}),
            "strength": recipe.strength_of(name),
            "scored_rows": len(values),
            "mean_similarity": round(sum(values) / len(values), 4) if values else None,
            "near_copies": sum(value >= threshold for value in values),
            "near_copy_threshold": threshold,
            "in_quality_reference": leaked.get(name),
        }
    return report


def quality_reference_leaks(recipe: Recipe) -> dict[str, int]:
    """Per guided class, how many of its reference photos ``quality.reference`` holds (by their bytes' SHA-256;
    empty without a usable reference dataset, whose problem the quality pass reports)."""
    settings = recipe.quality.reference
    if settings is None or not recipe.quality.enabled:
        return {}
    hashes = {sha for spec in recipe.classes.values() for sha in (spec.reference_sha256 or {}).values()}
    try:
        found = photos_in_reference(settings, recipe.class_names, hashes)
    except QualityError:
        return {}
    return {
        name: sum(sha in found for sha in (spec.reference_sha256 or {}).values())
        for name, spec in recipe.classes.items()
        if spec.reference_images is not None
    }


def near_copy_warning(report: dict[str, dict]) -> str | None:
    """The warning of classes whose images are largely near-copies of their references (``None``: none are)."""
    classes = [
        f"{name} ({entry['near_copies']} of {entry['scored_rows']} at strength {entry['strength']:g})"
        for name, entry in report.items()
        if entry["scored_rows"] and entry["near_copies"] >= NEAR_COPY_SHARE * entry["scored_rows"]
    ]
    if not classes:
        return None
    threshold = next(iter(report.values()))["near_copy_threshold"]
    return (
        f"NEAR-COPIES: images are near-copies of their reference photos (CLIP similarity ≥ {threshold:g}) in "
        f"{', '.join(classes)}: they add little over the photos themselves; raise the strength (see "
        "docs/guidance.md)"
    )


def reference_leakage_warning(report: dict[str, dict]) -> str | None:
    """The warning of reference photos that ``quality.reference`` holds too (``None``: it holds none)."""
    leaked = {name: entry["in_quality_reference"] for name, entry in report.items() if entry["in_quality_reference"]}
    if not leaked:
        return None
    return (
        f"REFERENCE LEAKAGE: quality.reference holds {sum(leaked.values())} of the reference photos the images "
        f"started from ({', '.join(f'{name}: {count}' for name, count in leaked.items())}): CMMD to it is measured "
        "against the photos themselves; use real images the build did not start from"
    )


def guidance_warnings(report: dict[str, dict]) -> list[str]:
    """The report's warnings: near-copies, and reference photos in the quality reference."""
    return [w for w in (near_copy_warning(report), reference_leakage_warning(report)) if w]


def log_guidance_warnings(report: dict[str, dict]) -> None:
    for warning in guidance_warnings(report):
        log.warning(warning)


def card_rows(report: dict[str, dict]) -> list[tuple[str, ...]]:
    """The card's table of the reference sets: class, photos, the set's hash, strength, similarity, near-copies."""
    return [
        (
            md(name),
            str(entry["references"]),
            f"`{entry['set_sha256'][:16]}`",
            f"{entry['strength']:g}",
            "-" if entry["mean_similarity"] is None else f"{entry['mean_similarity']:.3f}",
            f"{entry['near_copies']} of {entry['scored_rows']}" if entry["scored_rows"] else "-",
        )
        for name, entry in report.items()
    ]
