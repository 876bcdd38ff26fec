"""``build.py OWNER/NAME --export-only``: the formats of a Hub dataset already in the local Hub cache, offline,
without generating anything or loading a model."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import torchvision
from huggingface_hub.utils import filter_repo_objects

from builders.formats.command import write_formats
from builders.formats.registry import format_folders
from builders.hub import IGNORE_PATTERNS
from synthcore.outdir import claimed
from tests import handmade
from tests.handmade import handmade_recipe, write_shards
from tests.helpers import ROOT

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def cache_hub_dataset(hub_cache: Path, repo: str, dataset: Path) -> None:
    """The files a push of ``dataset`` uploads (no format asked), laid out in ``hub_cache`` as huggingface_hub
    lays out a download: ``blobs/<sha256>``, ``snapshots/<commit>/<path>`` linking
    to its blob, ``refs/main`` naming the commit."""
    root = hub_cache / f"datasets--{repo.replace('/', '--')}"
    (root / "blobs").mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(COMMIT)
    names = [p.relative_to(dataset).as_posix() for p in dataset.rglob("*") if p.is_file()]
    for name in filter_repo_objects(names, ignore_patterns=IGNORE_PATTERNS + [f"{f}/**" for f in format_folders()]):
        data = (dataset / name).read_bytes()
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = root / "snapshots" / COMMIT / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))


def test_export_only_writes_the_formats_of_a_hub_dataset_in_the_cache(tmp_path: Path):
    built = tmp_path / "built"
    recipe = handmade_recipe("formats: [parquet, imagefolder]\n")  # the export to compare with
    store, plan, provenance = write_shards(recipe, built)
    handmade.export(recipe, store, plan, provenance)
    with claimed(built, handmade.BUILD_OUTPUT) as owned:
        write_formats(owned, recipe)
    home = tmp_path / "hf-home"  # holds this dataset and no model: loading one would fail offline
    cache_hub_dataset(home / "hub", "someone/cached", built)
    out = tmp_path / "exports"
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    env.pop("HF_HUB_CACHE", None)
    command = [sys.executable, str(ROOT / "build.py"), "someone/cached", "--export-only", "--formats", "imagefolder"]
    result = subprocess.run(
        [*command, "--output-dir", str(out)], capture_output=True, text=True, timeout=300, cwd=ROOT, env=env
    )
    assert result.returncode == 0, result.stderr
    assert not (out / "data").exists()  # only the formats are written there
    for split in ("train", "test"):
        folder = torchvision.datasets.ImageFolder(str(out / "imagefolder" / split))
        assert len(folder) == len(list((built / "imagefolder" / split).glob("*/*.png"))) > 0
        for path, _ in folder.samples:
            relative = Path(path).relative_to(out / "imagefolder")
            assert Path(path).read_bytes() == (built / "imagefolder" / relative).read_bytes()
    assert not any((home / "hub").glob("models--*"))  # nothing downloaded, no model looked for
    command[2] = "someone/not-cached"
    missing = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert missing.returncode == 2 and "someone/not-cached" in missing.stderr and "Traceback" not in missing.stderr
