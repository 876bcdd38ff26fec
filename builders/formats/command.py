"""The formats from ``build.py``: after a build's export, and alone (``--export-only``) from a finished dataset, a
build's directory or a Hub dataset already in the local cache, without generating anything or loading a model."""

from __future__ import annotations

import sys
from pathlib import Path

from huggingface_hub import snapshot_download

from builders.card import refreshed_card
from builders.export import BUILD_OUTPUT
from builders.formats.choice import FormatChoice
from builders.formats.export import FormatReport, export_formats
from builders.formats.source import NoDataError, SourceData
from builders.recipe import Recipe
from synthcore.cardmeta import CARD
from synthcore.faults import report_fault
from synthcore.outdir import OwnedDir, atomic_write_text, claimed


def write_formats(owned: OwnedDir, recipe: Recipe) -> list[FormatReport]:
    """The recipe's formats, from the ``data/`` just published in ``owned``; the card then says which there are."""
    reports = export_formats(owned, SourceData.at(owned.root), recipe.formats)
    if (owned.root / CARD).is_file():
        atomic_write_text(owned.root / CARD, str(refreshed_card(owned.root, recipe.without_hub())))
    return reports


def dataset_root(ref: str, dataset_dir: Path | None, output_dir: str) -> Path:
    """Where the finished dataset to export from is: the directory given as RECIPE, the snapshot of a Hub id in the
    local cache, or (a recipe file given) the output directory."""
    if dataset_dir is not None:
        return dataset_dir
    if Path(ref).expanduser().exists():
        return Path(output_dir)
    try:
        return Path(snapshot_download(ref, repo_type="dataset", local_files_only=True))
    except Exception as err:  # noqa: BLE001 - not in the cache, whatever the library calls it
        raise NoDataError(
            f"{ref}: the Hub dataset is not in the local cache ({type(err).__name__}); --export-only reads no "
            f"network: download it first (`hf download {ref} --repo-type dataset`)"
        ) from None


def export_only(recipe: Recipe, root: Path, output_dir: str, choices: tuple[FormatChoice, ...]) -> int:
    """``--export-only``: the formats of the dataset at ``root`` into ``output_dir``; 0 done, 2 no dataset there,
    5 the output directory refused, and the faults of every command (interrupted: run it again to finish)."""
    try:
        source = SourceData.at(root)
        with claimed(output_dir, BUILD_OUTPUT) as owned:
            reports = export_formats(owned, source, choices)
            if (owned.root / CARD).is_file() and owned.root == root.resolve():
                atomic_write_text(owned.root / CARD, str(refreshed_card(owned.root, recipe.without_hub())))
    except NoDataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BaseException as err:  # noqa: BLE001 - the faults every command ends alike; anything else is re-raised
        kept = "What was written is kept; run the same command again to finish the export."
        if (code := report_fault(err, output_dir, kept)) is None:
            raise
        return code
    for report in reports:
        print(report.line())
    return 0
