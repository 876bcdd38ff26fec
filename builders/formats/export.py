"""Writing the formats of a finished dataset into its output directory, resumably, and publishing each whole.

A format is written into ``.synthdata/formats/partial-<folder>/<folder>``, which no reader looks at, and published
by one rename (an atomic exchange with the one it replaces) once complete. A run that was killed goes on where it
stopped (``base.Progress``) if the data is still the same (``SourceData.identity``); else it starts over. Once
published, ``.synthdata/formats/<folder>.json`` records which data and options it was made from: a rerun on the
same data skips it, and a format folder made from data since replaced (a rebuild, new filters) is removed, whether
or not this run asks for that format: what is in ``data/`` is in every format, and nothing else.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from builders.formats.base import ExportFormat, Progress, Written
from builders.formats.choice import FormatChoice
from builders.formats.registry import FORMATS, format_folders
from builders.formats.source import SourceData
from synthcore.outdir import WORK_DIR, OwnedDir, Tool, atomic_write_text

WORK = "formats"
IDENTITY, PROGRESS = "identity.json", "progress.jsonl"


def formats_output(command: str) -> Tool:
    """The top-level folders the formats write, as outputs of ``command`` (the build's), published apart from its
    other outputs: a build's own publish neither replaces nor removes them."""
    return Tool(command, format_folders())


@dataclass(frozen=True)
class FormatReport:
    name: str
    folder: Path
    written: Written | None  # None: already there for this data
    seconds: float

    def line(self) -> str:
        if self.written is None:
            return f"{self.name}: {self.folder} is up to date"
        counts = ", ".join(f"{split} {rows} rows" for split, rows in self.written.rows.items())
        return f"{self.name}: written to {self.folder} ({counts}) in {self.seconds:.1f}s"


def export_formats(owned: OwnedDir, source: SourceData, choices: Sequence[FormatChoice]) -> list[FormatReport]:
    """Each of ``choices`` that has a folder, written from ``source`` into ``owned`` unless already there for this
    data; then every format folder made from other data is removed."""
    view = OwnedDir(owned.root, formats_output(owned.tool.command))  # the same claim, for the format folders
    (view.work / WORK).mkdir(exist_ok=True)
    reports = [_export(view, source, choice) for choice in choices if choice.format.folder]
    for folder in format_folders():
        _withdraw_if_stale(view, source, folder)
    return reports


def _settings(choice: FormatChoice) -> dict:
    return {"format": choice.name, "options": choice.options.model_dump(mode="json")}


def _export(view: OwnedDir, source: SourceData, choice: FormatChoice) -> FormatReport:
    started, fmt = time.perf_counter(), choice.format
    folder = fmt.folder
    assert folder
    identity = source.identity(_settings(choice))
    marker, target = view.work / WORK / f"{folder}.json", view.root / folder
    if target.is_dir() and _recorded(marker).get("identity") == identity:
        return FormatReport(choice.name, target, None, 0.0)
    partial = view.work / WORK / f"partial-{folder}"
    if not ((partial / folder).is_dir() and _recorded(partial / IDENTITY).get("identity") == identity):
        shutil.rmtree(partial, ignore_errors=True)  # another dataset's, or options': start over
        (partial / folder).mkdir(parents=True)
        atomic_write_text(partial / IDENTITY, json.dumps({"identity": identity}))
    written = fmt.write(source, partial / folder, choice.options, Progress(partial / PROGRESS))
    view.publish(partial, names=[folder], whole=True)
    atomic_write_text(marker, json.dumps({"identity": identity, **_settings(choice)}, ensure_ascii=False))
    shutil.rmtree(partial, ignore_errors=True)  # what it replaced, and the progress
    return FormatReport(choice.name, target, written, time.perf_counter() - started)


def _recorded(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _withdraw_if_stale(view: OwnedDir, source: SourceData, folder: str) -> None:
    """Remove the published ``folder`` when it was made from other data (never a folder we did not publish)."""
    marker = view.work / WORK / f"{folder}.json"
    if not marker.exists():
        return
    recorded = _recorded(marker)
    settings = {"format": recorded.get("format"), "options": recorded.get("options")}
    if recorded.get("identity") == source.identity(settings):
        return
    if (view.root / folder).exists():
        view.withdraw(folder)
    marker.unlink()


def published_formats(root: Path) -> list[ExportFormat]:
    """The formats published in the dataset at ``root`` beside Parquet, for its card and its push."""
    work = Path(root) / WORK_DIR / WORK
    formats = [fmt() for fmt in FORMATS.values() if fmt.folder]
    return [fmt for fmt in formats if (work / f"{fmt.folder}.json").exists() and (Path(root) / fmt.folder).is_dir()]
