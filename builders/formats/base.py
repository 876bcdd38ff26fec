"""What a format plug-in is: a folder of the output directory, written from the finished dataset (``SourceData``).

A format writes into a folder that nobody reads until it is complete (``builders.formats.export`` publishes it by
one rename), and records in ``Progress`` each unit of work it finished (a source file, a shard), so a run that was
killed goes on where it stopped: the unit it was writing is written again whole, nothing is written twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import datasets
from huggingface_hub import DatasetCardData
from pydantic import BaseModel, ConfigDict

from builders.formats.source import SourceData
from synthcore.cardmeta import save_card


class FormatOptions(BaseModel):
    """A format's options in the recipe (``formats: [{webdataset: {max_samples: 1000}}]``); none by default."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class Progress:
    """The units of work of one export that are finished, one JSON line each, appended as they finish."""

    def __init__(self, path: Path):
        self.path = path
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        self.done: list[dict] = [json.loads(line) for line in lines if line.endswith("}")]  # a cut last line: not done

    def record(self, entry: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as log:
            log.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self.done.append(entry)


@dataclass
class Written:
    """What one format's export wrote: rows and files per split (files: images or shards)."""

    rows: dict[str, int] = field(default_factory=dict)
    files: dict[str, int] = field(default_factory=dict)


class ExportFormat:
    """A format: ``folder`` is its top-level folder in the output directory (None: written by the build itself),
    ``Options`` the model of its options, ``card_text`` what the dataset card says of it, ``write`` the export,
    ``hub_problems`` why the Hub would refuse the folder written."""

    name: ClassVar[str]
    folder: ClassVar[str | None]
    Options: ClassVar[type[FormatOptions]] = FormatOptions
    card_text: ClassVar[str] = ""

    def hub_problems(self, folder: Path) -> list[str]:
        return []

    def write(self, source: SourceData, folder: Path, options: FormatOptions, progress: Progress) -> Written:
        raise NotImplementedError


def write_folder_card(folder: Path, features: datasets.Features, rows: dict[str, int], body: str) -> None:
    """``README.md`` of a format's folder: each split's files and the features (our ClassLabels), so
    ``load_dataset`` on the folder reads the types instead of guessing them from the first rows (a column all null
    there, ``resnet50_match`` say, would be guessed null and refuse the later rows)."""
    splits = datasets.SplitDict()
    for split, count in rows.items():
        splits.add(datasets.SplitInfo(name=split, num_examples=count))
    info = datasets.DatasetInfo(features=features, splits=splits, config_name="default")._to_yaml_dict()
    files = [{"split": split, "path": f"{split}/**"} for split in rows]
    # features in the config too: the folder-based and webdataset builders take them from there
    config = {"config_name": "default", "data_files": files, "features": info["features"]}
    save_card(folder, DatasetCardData(configs=[config], dataset_info=info), body)
