"""Pushing to the Hub, up to the Hub client's boundary: the Hub is unreachable here (loopback endpoint or offline).

What runs for real: argument checks, the completeness check, the card refresh, huggingface_hub's token resolution
and its create_repo call failing on the network; the upload's file selection is checked with huggingface_hub's
own pattern filter. What cannot run here: a successful create_repo and upload_folder against the Hub.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
from huggingface_hub.utils import filter_repo_objects

from builders.cli import main
from builders.hub import IGNORE_PATTERNS
from tests.helpers import ROOT, run_build, run_main

FAKE_TOKEN = "hf_SyNtHdAtAfAkEtOkEn0123456789abcdef"
UNREACHABLE = {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9", "HF_TOKEN": FAKE_TOKEN}  # loopback only


@pytest.fixture()
def copy_of_smoke(smoke_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the built smoke dataset (shards included), so pushing it cannot touch the shared one."""
    return Path(shutil.copytree(smoke_dir, tmp_path / "smoke"))


def digests(root: Path, under: str) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((root / under).rglob("*"))
        if p.is_file()
    }


@pytest.mark.e2e  # the smoke build
def test_failed_push_after_build_reports_clearly_keeps_the_data_and_never_writes_the_token(copy_of_smoke: Path):
    result = run_build(
        "recipes/smoke.yaml",
        "--output-dir",
        str(copy_of_smoke),
        "--push-to-hub",
        "someone/smoke-test",
        env=UNREACHABLE,
        check=False,
    )
    assert result.returncode == 3, result.stderr
    assert "cannot push to the Hub dataset someone/smoke-test: ConnectError" in result.stderr
    assert f"The dataset in {copy_of_smoke} is complete" in result.stderr
    assert (
        f"build.py recipes/smoke.yaml --output-dir {copy_of_smoke} --push-only --push-to-hub someone/smoke-test"
        in result.stderr
    )
    assert datasets.load_dataset(str(copy_of_smoke), split="train").num_rows == 12
    # the card names a repo only once a push to it succeeded
    assert "someone/smoke-test" not in (copy_of_smoke / "README.md").read_text(encoding="utf-8")
    written = [p for p in copy_of_smoke.rglob("*") if p.is_file()]
    assert len(written) > 20
    for path in written:
        assert FAKE_TOKEN.encode() not in path.read_bytes(), path
    assert FAKE_TOKEN not in result.stdout + result.stderr


@pytest.mark.e2e  # the smoke build
def test_push_only_loads_no_model_and_changes_no_data(copy_of_smoke: Path):
    before = digests(copy_of_smoke, "data") | digests(copy_of_smoke, ".synthdata/shards")
    card = (copy_of_smoke / "README.md").read_bytes()
    code = (
        "import sys\nfrom builders.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        "heavy = ('diffusers', 'transformers', 'builders.generators', 'builders.distributed_build')\n"
        "print('loaded:', sorted(m for m in heavy if m in sys.modules))\n"
        "sys.exit(rc)\n"
    )
    args = [str(copy_of_smoke), "--push-only", "--push-to-hub", "someone/smoke-test", "--private"]
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_TOKEN": FAKE_TOKEN, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 3, result.stderr
    assert "loaded: []" in result.stdout
    assert "cannot push to the Hub dataset someone/smoke-test: OfflineModeIsEnabled" in result.stderr
    assert "HF_HUB_OFFLINE is set: unset it to push." in result.stderr
    assert f"--output-dir {copy_of_smoke} --push-only --push-to-hub someone/smoke-test --private" in result.stderr
    assert digests(copy_of_smoke, "data") | digests(copy_of_smoke, ".synthdata/shards") == before
    assert (copy_of_smoke / "README.md").read_bytes() == card  # a failed push changes nothing local


@pytest.mark.e2e  # the smoke build
def test_push_without_a_token_says_how_to_log_in(copy_of_smoke: Path, tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env |= {
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_OFFLINE": "0",
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "PYTHONPATH": str(ROOT),
    }
    result = subprocess.run(
        [sys.executable, "build.py", str(copy_of_smoke), "--push-only", "--push-to-hub", "someone/x"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 3
    assert (
        "cannot push to the Hub dataset someone/x: no Hugging Face token found. Set HF_TOKEN or run `hf auth login`"
        in result.stderr
    )


@pytest.mark.e2e  # the smoke build
def test_push_only_refuses_a_missing_or_incomplete_dataset(copy_of_smoke: Path, tmp_path: Path):
    push = ("--push-only", "--push-to-hub", "someone/x")
    missing = run_main(main, "recipes/smoke.yaml", "--output-dir", str(tmp_path / "nothing"), *push)
    assert (
        missing.returncode == 2 and "no exported dataset here" in missing.stderr and "build it first" in missing.stderr
    )
    (copy_of_smoke / "data" / "train-00003-of-00006.parquet").unlink()
    holed = run_main(main, "recipes/smoke.yaml", "--output-dir", str(copy_of_smoke), *push)
    assert (
        holed.returncode == 2
        and "data/train-*.parquet: files missing" in holed.stderr
        and "Nothing was pushed." in holed.stderr
    )
    other = tmp_path / "other.yaml"
    other.write_text(
        (ROOT / "recipes" / "smoke.yaml").read_text(encoding="utf-8").replace("seed: 0", "seed: 1"), encoding="utf-8"
    )
    wrong = run_main(main, str(other), "--output-dir", str(copy_of_smoke), *push)
    assert wrong.returncode == 2 and "is not this recipe" in wrong.stderr


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--push-to-hub", "not a repo"], "Hub repo id 'not a repo' is not valid"),
        (["--push-to-hub", "lonely"], "needs its owner: USER/NAME"),
        (["--private"], "--private (or hub.private) needs a repo to push to"),
        (["--push-only"], "--push-only: no repo to push to"),
    ],
)
def test_bad_push_arguments_fail_before_anything_is_built(tmp_path: Path, args: list[str], expected: str):
    result = run_main(main, "recipes/smoke.yaml", "--output-dir", str(tmp_path / "out"), *args)
    assert result.returncode == 2 and expected in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.e2e  # the smoke build
def test_upload_selection_leaves_out_the_work_directory(smoke_dir: Path):
    files = sorted(p.relative_to(smoke_dir).as_posix() for p in smoke_dir.rglob("*") if p.is_file())
    uploaded = list(filter_repo_objects(files, ignore_patterns=IGNORE_PATTERNS))
    assert {
        "README.md",
        "recipe.yaml",
        "build_info.json",
        "data/train-00000-of-00006.parquet",
        "pictures/samples-class-000.png",
    } <= set(uploaded)
    assert not [f for f in uploaded if f.startswith(".synthdata")] and any(f.startswith(".synthdata/") for f in files)
